import { expect, test, waitForHydration } from "./fixtures";
import { confirmEmail, register, signInWithPassword, submit, expectSignedIn } from "./journeys";

// The account settings a person uses to keep control: the sessions list (signing out another browser)
// and the security activity timeline.

test.describe("sessions and security activity", () => {
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
});
