import { expect, test, waitForHydration } from "./fixtures";
import { waitForEmail } from "./mail";
import {
  confirmEmail,
  expectSignedIn,
  register,
  signInWithPassword,
  signOut,
  submit,
} from "./journeys";

// The account settings a person uses to keep control: the sessions list (signing out another browser)
// and the security activity timeline.

test.describe("account settings", () => {
  test("a second browser is listed, signed out from the first, and the timeline says so", async ({
    page,
    browser,
  }) => {
    const started = Date.now();
    const account = await register(page, "sessions");
    await confirmEmail(page, account, started);
    await signInWithPassword(page, account);
    await expectSignedIn(page, account.displayName);

    // The same account signs in from another browser.
    const other = await browser.newContext({ baseURL: test.info().project.use.baseURL });
    const otherPage = await other.newPage();
    await signInWithPassword(otherPage, account);
    await expectSignedIn(otherPage, account.displayName);

    // The first browser sees both sessions, itself marked.
    await page.goto("/settings/sessions");
    await waitForHydration(page);
    const items = page.locator(".session-list .session-item");
    await expect(items).toHaveCount(2);
    const current = page.locator(".session-item.session-current");
    await expect(current).toHaveCount(1);
    await expect(current.locator(".session-device")).toContainText("This browser");
    await expect(current.locator(".session-meta")).toContainText("127.0.0.1");
    await expect(current.getByRole("button", { name: "Sign out" })).toHaveCount(0);

    // It signs the other one out.
    const otherItem = page.locator(".session-item:not(.session-current)");
    await expect(async () => {
      const answer = await submit(page, otherItem.getByRole("button", { name: "Sign out" }), "revoke_session");
      expect(answer.ok()).toBe(true);
    }).toPass();
    await expect(page.locator(".form-success")).toHaveText("That session was signed out.");
    await expect(items).toHaveCount(1);

    // The other browser is signed out on its next request.
    await otherPage.goto("/settings/security");
    await expect(otherPage.locator(".sign-in-prompt")).toBeVisible();
    await expect(otherPage.locator("header.site-header a.nav-sign-in")).toBeVisible();
    await other.close();

    // The timeline tells the story, newest first.
    await page.goto("/settings/activity");
    await waitForHydration(page);
    const whats = page.locator(".activity-list .activity-what");
    await expect(whats.first()).toHaveText("Signed out another session");
    await expect(whats).toContainText(["Signed in", "Signed in", "Confirmed the email address", "Created the account"]);
    await expect(page.locator(".activity-list .activity-meta").first()).toContainText("127.0.0.1");
  });

  test("on the sessions page a later outcome replaces an earlier one", async ({ page, browser, problems }) => {
    // The refusal below is the point: a session that is gone answers 404.
    problems.allowConsoleError(({ text, url }) => /status of 404\b/.test(text) && url.endsWith("/api/revoke_session"));
    const started = Date.now();
    const account = await register(page, "outcomes");
    await confirmEmail(page, account, started);
    await signInWithPassword(page, account);
    await expectSignedIn(page, account.displayName);

    // Two more browsers, told apart in the list by their user agents.
    const signedInElsewhere = async (userAgent: string) => {
      const context = await browser.newContext({ baseURL: test.info().project.use.baseURL, userAgent });
      const other = await context.newPage();
      await signInWithPassword(other, account);
      await expectSignedIn(other, account.displayName);
      return { context, page: other };
    };
    const firefox = await signedInElsewhere(
      "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    );
    const chrome = await signedInElsewhere(
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    );

    await page.goto("/settings/sessions");
    await waitForHydration(page);
    await expect(page.locator(".session-list .session-item")).toHaveCount(3);
    // Firefox signs out by itself; the list here still shows it, and signing it out fails.
    await firefox.page.goto("/settings/security");
    await waitForHydration(firefox.page);
    await signOut(firefox.page);
    await firefox.context.close();
    const firefoxItem = page.locator(".session-item", { hasText: "Firefox" });
    await expect(async () => {
      const answer = await submit(page, firefoxItem.getByRole("button", { name: "Sign out" }), "revoke_session");
      expect(answer.status()).toBe(404);
    }).toPass();
    const error = page.locator(".settings-section > .form-error");
    await expect(error).toHaveText("We could not find that.");

    // Then signing out every other session works: its success shows, and the old error is gone.
    const answer = await submit(
      page,
      page.getByRole("button", { name: "Sign out of all other sessions" }),
      "revoke_other_sessions",
    );
    expect(answer.ok()).toBe(true);
    await expect(page.locator(".form-success")).toHaveText("Every other session was signed out.");
    await expect(error).toHaveCount(0);
    await chrome.context.close();
  });

  test("deleting the account signs out, sends a receipt, and the password no longer works", async ({
    page,
    problems,
  }) => {
    const started = Date.now();
    const account = await register(page, "delete");
    await confirmEmail(page, account, started);
    await signInWithPassword(page, account);
    await expectSignedIn(page, account.displayName);

    await page.goto("/settings/account");
    await waitForHydration(page);
    const form = page.locator("form.delete-account-form");
    await form.getByLabel("Your password", { exact: true }).fill(account.password);
    // A typo in the confirmation is refused next to the field, and nothing is deleted.
    problems.allowConsoleError(({ text }) => /status of 400\b/.test(text));
    await form.getByLabel("Type your email address to confirm").fill(`x${account.email}`);
    await expect(async () => {
      const answer = await submit(page, form.getByRole("button", { name: "Delete my account" }), "delete_account");
      expect(answer.status()).toBe(400);
    }).toPass();
    await expect(page.locator("#delete-confirm-email-error")).toContainText("Type your account's email address");

    await form.getByLabel("Your password", { exact: true }).fill(account.password);
    await form.getByLabel("Type your email address to confirm").fill(account.email);
    await submit(page, form.getByRole("button", { name: "Delete my account" }), "delete_account");
    await expect(page).toHaveURL(/\/goodbye$/);
    await expect(page.locator("main h1")).toHaveText("Your account was deleted");
    await expect(page.locator("header.site-header a.nav-sign-in")).toBeVisible();
    await waitForEmail(account.email, { subjectIncludes: "Your Nest Egg account was deleted", after: started });

    // Signing in again does not work.
    await page.goto("/login");
    await waitForHydration(page);
    problems.allowConsoleError(({ text }) => /status of 400\b/.test(text));
    const form2 = page.locator("form.login-form");
    await form2.locator('input[name="email"]').fill(account.email);
    await form2.locator('input[name="password"]').fill(account.password);
    const answer = await submit(page, form2.getByRole("button", { name: "Sign in" }), "sign_in");
    expect(answer.status()).toBe(400);
    await expect(page.locator("form.login-form .form-error")).toContainText("don't match an account");
  });
});
