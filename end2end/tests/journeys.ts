import { expect, type Locator, type Page, type Response } from "@playwright/test";
import { waitForHydration } from "./fixtures";
import { linkFrom, waitForEmail } from "./mail";
import { PASSWORD, header, uniqueEmail } from "./accounts-common";

// Steps that many journeys share: signing up and confirming through the real email, signing in and out
// through the forms, and submitting a form while waiting for the server function it calls.

/** The next answer of the server function `/api/<endpoint>` (start waiting before the action that calls it). */
export function serverFnAnswer(page: Page, endpoint: string): Promise<Response> {
  return page.waitForResponse(
    (r) => r.request().method() === "POST" && new URL(r.url()).pathname === `/api/${endpoint}`,
  );
}

/** Clicks `button` and returns the answer of the server function call it makes (POST /api/<endpoint>). */
export async function submit(page: Page, button: Locator, endpoint: string): Promise<Response> {
  const answered = serverFnAnswer(page, endpoint);
  await button.click();
  return answered;
}

export async function expectSignedIn(page: Page, displayName: string): Promise<void> {
  await expect(header(page).userName).toHaveText(displayName);
  await expect(header(page).signInLink).toHaveCount(0);
}

export async function expectSignedOut(page: Page): Promise<void> {
  await expect(header(page).signInLink).toHaveText("Sign in");
  await expect(header(page).userMenu).toHaveCount(0);
}

export interface Account {
  email: string;
  displayName: string;
  password: string;
}

/** Signs up through the form (which does not sign in); ends on "Check your inbox". */
export async function register(page: Page, name: string, email?: string): Promise<Account> {
  const account = { email: email ?? uniqueEmail(name), displayName: `E2E ${name}`, password: PASSWORD };
  await page.goto("/register");
  await waitForHydration(page);
  const form = page.locator("form.register-form");
  await form.locator('input[name="email"]').fill(account.email);
  await form.locator('input[name="display_name"]').fill(account.displayName);
  await form.locator('input[name="password"]').fill(account.password);
  await form.locator('input[name="accept_terms"]').check();
  await form.locator('input[name="accept_privacy"]').check();
  await form.getByRole("button", { name: "Create account" }).click();
  await expect(page).toHaveURL(/\/register\/check-inbox$/);
  return account;
}

/** Opens the link of the confirmation email and confirms the address. */
export async function confirmEmail(page: Page, account: Account, after: number): Promise<void> {
  const mail = await waitForEmail(account.email, { subjectIncludes: "Confirm your email", after });
  await page.goto(linkFrom(mail, "/verify-email?token="));
  await waitForHydration(page);
  const confirm = page.locator("form.verify-email-form").getByRole("button", { name: "Confirm my email address" });
  await submit(page, confirm, "verify_email");
  await expect(page.locator(".form-success")).toHaveText("Your email address is confirmed.");
}

/** Fills and submits the sign-in form of the page that is open (the password step). */
export async function submitPassword(page: Page, account: Account): Promise<void> {
  const form = page.locator("form.login-form");
  await form.locator('input[name="email"]').fill(account.email);
  await form.locator('input[name="password"]').fill(account.password);
  const answer = await submit(page, form.getByRole("button", { name: "Sign in" }), "sign_in");
  expect(answer.ok(), `sign_in answered ${answer.status()}`).toBe(true);
}

export async function signInWithPassword(page: Page, account: Account): Promise<void> {
  await page.goto("/login");
  await waitForHydration(page);
  await submitPassword(page, account);
}

export async function signOut(page: Page): Promise<void> {
  await submit(page, header(page).signOut, "sign_out");
  await expectSignedOut(page);
}
