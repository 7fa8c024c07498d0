import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { defineConfig, devices } from "@playwright/test";

// Playwright evaluates this file in the runner and again in every worker process. Workers inherit
// the runner's environment, so the runner's values are reused instead of each worker making new ones.
const DATA_DIR_VAR = "NESTEGG_E2E_DATA_DIR";
// Where the test SMTP server (global-setup.ts) writes every email it receives; tests/mail.ts reads it.
const MAIL_DIR_VAR = "NESTEGG_E2E_MAIL_DIR";

function required(name: string, hint: string): string {
  const value = process.env[name];
  if (value === undefined || value.trim() === "") {
    throw new Error(`end2end: environment variable ${name} is not set: ${hint} (scripts/test.sh sets it)`);
  }
  return value;
}

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

const PORT = process.env.E2E_PORT ?? "3100";
const SMTP_PORT = process.env.E2E_SMTP_PORT ?? "2526";
// Resolved once here, for global-setup.ts and the tests (tests/mail.ts builds links from the port).
process.env.E2E_PORT = PORT;
process.env.E2E_SMTP_PORT = SMTP_PORT;
const BASE_URL = `http://127.0.0.1:${PORT}`;

const binVar = required("NESTEGG_BIN", "the path of the built `nestegg` server binary");
// Relative paths are taken from where the runner was started; the server itself runs in end2end/.
const NESTEGG_BIN = binVar.includes("/") ? path.resolve(binVar) : binVar;
const LEPTOS_SITE_ROOT = path.resolve(
  required("LEPTOS_SITE_ROOT", "the site root built by cargo-leptos (the folder holding pkg/)"),
);

/**
 * The folder named by `variable`: inherited from the runner, or (only the runner gets there) a fresh,
 * empty temporary folder for this run, removed when the run ends. A folder set by hand is kept.
 */
function runFolder(variable: string, prefix: string): string {
  const inherited = process.env[variable];
  if (inherited !== undefined) return inherited;
  const created = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.env[variable] = created;
  process.on("exit", () => {
    try {
      fs.rmSync(created, { recursive: true, force: true });
    } catch {
      // best effort: it is a temporary folder
    }
  });
  return created;
}

// A fresh data folder (and SQLite database) for every run, and next to it the mailbox of the run.
const dataDir = runFolder(DATA_DIR_VAR, "nestegg-e2e-");
runFolder(MAIL_DIR_VAR, "nestegg-e2e-mail-");

const inheritedEnv: Record<string, string> = {};
for (const [key, value] of Object.entries(process.env)) {
  if (value !== undefined) inheritedEnv[key] = value;
}

export default defineConfig({
  testDir: "./tests",
  fullyParallel: false,
  workers: 1,
  retries: 0,
  forbidOnly: !!process.env.CI,
  reporter: "list",
  timeout: 60_000,
  expect: { timeout: 10_000 },
  // Starts the SMTP server that receives the app's email (see the comment in the file for the order).
  globalSetup: "./global-setup.ts",
  use: {
    baseURL: BASE_URL,
  },
  projects: [
    {
      name: "chromium",
      use: {
        ...devices["Desktop Chrome"],
        launchOptions: {
          executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
          args: [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
          ],
        },
      },
    },
  ],
  webServer: {
    command: `${shellQuote(NESTEGG_BIN)} serve`,
    url: `${BASE_URL}/health/ready`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: "pipe",
    stderr: "pipe",
    env: {
      ...inheritedEnv,
      ENVIRONMENT: "development",
      DATA_DIR: dataDir,
      DATABASE_URL: `sqlite://${dataDir}/nestegg.db?mode=rwc`,
      LEPTOS_SITE_ADDR: `127.0.0.1:${PORT}`,
      PUBLIC_URL: BASE_URL,
      LEPTOS_SITE_ROOT,
      // The server reads its site options from the repository's Leptos.toml; it runs in end2end/.
      LEPTOS_CONFIG: path.resolve(process.env.LEPTOS_CONFIG ?? "../Leptos.toml"),
      RUST_LOG: "info",
      // Email goes to the test SMTP server started by global-setup.ts (plain SMTP, no TLS, no login).
      SMTP_URL: `smtp://127.0.0.1:${SMTP_PORT}`,
      MAIL_FROM: "Nest Egg <no-reply@nestegg.test>",
      // Every test shares this server and comes from 127.0.0.1: per-IP limits would soon refuse them.
      // Lock-out after failed sign-ins counts per email address, so each test uses its own addresses.
      RATE_LIMIT_SIGN_IN_PER_MINUTE: "1000",
      RATE_LIMIT_REGISTER_PER_HOUR: "1000",
      RATE_LIMIT_RESET_PER_HOUR: "1000",
      RATE_LIMIT_RESET_PER_ACCOUNT_PER_HOUR: "1000",
      RATE_LIMIT_API_PER_MINUTE: "100000",
      RATE_LIMIT_PAGES_PER_MINUTE: "100000",
      // The code step of signing in (two-factor authentication): 3 a minute per IP by default.
      RATE_LIMIT_MFA_PER_MINUTE: "1000",
      // The operator of this deployment (admin.spec.ts signs up with it).
      ADMIN_EMAILS: "operator@e2e.nestegg.test",
      // A free port for /metrics, so a development server on the default port does not clash.
      METRICS_ADDR: "127.0.0.1:0",
    },
  },
});
