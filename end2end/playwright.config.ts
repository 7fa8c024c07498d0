import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { defineConfig, devices } from "@playwright/test";

// Playwright evaluates this file in the runner and again in every worker process. Workers inherit
// the runner's environment, so the runner's value is reused instead of each worker making a new one.
const DATA_DIR_VAR = "NESTEGG_E2E_DATA_DIR";

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
const BASE_URL = `http://127.0.0.1:${PORT}`;

const binVar = required("NESTEGG_BIN", "the path of the built `nestegg` server binary");
// Relative paths are taken from where the runner was started; the server itself runs in end2end/.
const NESTEGG_BIN = binVar.includes("/") ? path.resolve(binVar) : binVar;
const LEPTOS_SITE_ROOT = path.resolve(
  required("LEPTOS_SITE_ROOT", "the site root built by cargo-leptos (the folder holding pkg/)"),
);

let dataDir = process.env[DATA_DIR_VAR];
if (dataDir === undefined) {
  // Only the runner gets here: a fresh, empty data folder (and SQLite database) for every run.
  const created = fs.mkdtempSync(path.join(os.tmpdir(), "nestegg-e2e-"));
  dataDir = created;
  process.env[DATA_DIR_VAR] = created;
  process.on("exit", () => {
    try {
      fs.rmSync(created, { recursive: true, force: true });
    } catch {
      // best effort: it is a temporary folder
    }
  });
}

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
    },
  },
});
