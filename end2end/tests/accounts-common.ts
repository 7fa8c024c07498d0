import type { Page } from "@playwright/test";

// Shared by the account specs (with and without JavaScript).

/** Strong enough for the password policy (which refuses short, common or guessable passwords). */
export const PASSWORD = "glacier Minnow 47 paperclip orbit";
export const NEW_PASSWORD = "velvet Harbor 93 lantern quiver";

export const WRONG_CREDENTIALS = "That email and password don't match an account. Check both and try again.";

let counter = 0;
/** A new address for every call (`${name}-<time>-<n>@example.test`): lock-outs count per address. */
export function uniqueEmail(name: string): string {
  counter += 1;
  return `${name}-${Date.now()}-${counter}@example.test`;
}

/** The parts of the site header that show who is signed in. */
export function header(page: Page) {
  const site = page.locator("header.site-header");
  return {
    signInLink: site.locator("a.nav-sign-in"),
    userMenu: site.locator(".user-menu"),
    userName: site.locator(".user-menu .user-name"),
    signOut: site.locator("form.sign-out-form").getByRole("button", { name: "Sign out" }),
  };
}
