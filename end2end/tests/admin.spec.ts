import { expect, test, waitForHydration } from "./fixtures";
import { confirmEmail, expectSignedIn, register, signInWithPassword } from "./journeys";

// The operators' security status page: the operator (ADMIN_EMAILS in playwright.config.ts) sees every
// check, the jobs and the deployment's events; anyone else gets the ordinary 404 page.

const OPERATOR = "operator@e2e.nestegg.test";

test.describe("security status", () => {
  test("is a 404 for an ordinary account", async ({ page, problems }) => {
    problems.allowConsoleError(({ text }) => /status of 404\b/.test(text));
    const started = Date.now();
    const account = await register(page, "not-operator");
    await confirmEmail(page, account, started);
    await signInWithPassword(page, account);
    await expectSignedIn(page, account.displayName);
    const response = await page.goto("/admin/security-status");
    expect(response?.status()).toBe(404);
    await expect(page.locator("h1")).toHaveText("We couldn't find that page");
  });

  test("shows the operator every check, the jobs and filtered events", async ({ page }) => {
    const started = Date.now();
    const operator = await register(page, "operator", OPERATOR);
    await confirmEmail(page, operator, started);
    await signInWithPassword(page, operator);
    await expectSignedIn(page, operator.displayName);

    const response = await page.goto("/admin/security-status");
    expect(response?.status()).toBe(200);
    await waitForHydration(page);
    await expect(page.locator("h1")).toHaveText("Security status");

    // SMTP is configured for the test server; HTTPS is not (a development run), with its fix.
    const email = page.locator('.status-check[data-check="Email delivery"]');
    await expect(email).toHaveClass(/status-ok/);
    const https = page.locator('.status-check[data-check="HTTPS enforced"]');
    await expect(https).toHaveClass(/status-fail/);
    await expect(https.locator(".status-fix")).toContainText("ENVIRONMENT=production");
    await expect(page.locator(".status-summary")).toContainText("checks need attention");

    for (const job of ["backup", "outbox", "purge_history", "purge_sessions", "purge_tokens"]) {
      await expect(page.locator(`.job-table tr[data-job="${job}"]`)).toBeVisible();
    }

    // The events of every account, filtered to the operator's own sign-ins.
    await page.locator("#event-kind").selectOption("sign_in");
    await page.locator("#event-email").fill(OPERATOR);
    await page.getByRole("button", { name: "Filter" }).click();
    await expect(page).toHaveURL(/kind=sign_in/);
    const rows = page.locator(".event-table tbody tr");
    await expect(rows.first()).toBeVisible();
    const accounts = await rows.locator("td:nth-child(3)").allTextContents();
    expect(accounts.length).toBeGreaterThan(0);
    for (const who of accounts) expect(who).toBe(OPERATOR);
  });
});
