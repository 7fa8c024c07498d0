import type { FullConfig } from "@playwright/test";
import { startSmtpServer } from "./fixtures/smtp";

// Playwright (1.65, lib/runner: `createGlobalSetupTasks`) runs the plugin set-up tasks, `webServer`
// among them, *before* the `globalSetup` files, and their teardowns in reverse order: the app is
// already up when this starts, and this server is closed before the app is stopped. Either order
// works: the app only opens an SMTP connection when it has an email to send, which only happens once
// a test does something.

/** Starts the SMTP server the app sends its email to (see playwright.config.ts); returns its teardown. */
export default async function globalSetup(_config: FullConfig): Promise<() => Promise<void>> {
  const mailDir = process.env.NESTEGG_E2E_MAIL_DIR;
  const port = Number(process.env.E2E_SMTP_PORT);
  if (mailDir === undefined || !Number.isInteger(port)) {
    throw new Error("end2end: NESTEGG_E2E_MAIL_DIR and E2E_SMTP_PORT are set by playwright.config.ts");
  }
  const smtp = await startSmtpServer({ host: "127.0.0.1", port, mailDir });
  return () => smtp.close();
}
