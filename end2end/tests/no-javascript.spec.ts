import type { Page } from "@playwright/test";
import { expect, test } from "./fixtures";
import { linkFrom, waitForEmail } from "./mail";
import { PASSWORD, WRONG_CREDENTIALS, uniqueEmail, header } from "./accounts-common";

// The account forms with JavaScript switched off: every form is a plain HTML post to /api/<function>.
// On an error the server redirects back to the page with `__err` in the URL (and the non-secret fields
// as `keep_<name>`), and the page renders the error next to its field; on success it redirects on,
// or back to the page with `?done=<function>` and the page shows its message. Nothing here waits for
// hydration: without JavaScript there is none.
test.use({ javaScriptEnabled: false });

// Refused by the policy for its length alone.
const SHORT_PASSWORD = "Tiny7pw";
const TOO_SHORT = "Use at least 12 characters — a short phrase of a few unrelated words works well.";


/** Whether `url` holds one of the passwords above, as typed or form-encoded. */
function carriesPassword(url: string): boolean {
  const decoded = decodeURIComponent(url.replace(/\+/g, " "));
  return [SHORT_PASSWORD, PASSWORD].some((password) => decoded.includes(password));
}

interface Account {
  email: string;
  displayName: string;
  password: string;
}


function registerForm(page: Page) {
  const form = page.locator("form.register-form");
  return {
    form,
    email: form.locator('input[name="email"]'),
    displayName: form.locator('input[name="display_name"]'),
    password: form.locator('input[name="password"]'),
    passwordError: page.locator("#register-password-error"),
    acceptTerms: form.locator('input[name="accept_terms"]'),
    acceptPrivacy: form.locator('input[name="accept_privacy"]'),
    submit: form.getByRole("button", { name: "Create account" }),
  };
}

function loginForm(page: Page) {
  const form = page.locator("form.login-form");
  return {
    form,
    email: form.locator('input[name="email"]'),
    password: form.locator('input[name="password"]'),
    error: form.locator(".form-error"),
    submit: form.getByRole("button", { name: "Sign in" }),
  };
}

/** Signs up through the plain form; ends on "Check your inbox". */
async function register(page: Page, account: Account): Promise<void> {
  await page.goto("/register");
  const f = registerForm(page);
  await f.email.fill(account.email);
  await f.displayName.fill(account.displayName);
  await f.password.fill(account.password);
  await f.acceptTerms.check();
  await f.acceptPrivacy.check();
  await f.submit.click();
  await expect(page).toHaveURL(/\/register\/check-inbox$/);
  await expect(page.locator("main h1")).toHaveText("Check your inbox");
}

async function newAccount(page: Page, name: string): Promise<Account> {
  const account = { email: uniqueEmail(`nojs-${name}`), displayName: `NoJS ${name}`, password: PASSWORD };
  await register(page, account);
  return account;
}

test("register without JavaScript: a refused password comes back next to its field, nothing else is lost", async ({
  page,
}) => {
  // Every URL the browser asks for or lands on, to show the password never travels in one.
  const urls: string[] = [];
  page.on("request", (request) => urls.push(request.url()));
  page.on("framenavigated", (frame) => urls.push(frame.url()));

  const email = uniqueEmail("nojs-register");
  const displayName = "Ada NoScript";

  const response = await page.goto("/register");
  expect(response?.status()).toBe(200);
  const f = registerForm(page);
  await f.email.fill(email);
  await f.displayName.fill(displayName);
  await f.password.fill(SHORT_PASSWORD);
  await f.acceptTerms.check();
  await f.acceptPrivacy.check();
  await f.submit.click();

  // Back on the form, as a new page, with the error next to the password field…
  await expect(page).toHaveURL(/\/register\?.*__err=/);
  await expect(f.passwordError).toHaveText(TOO_SHORT);
  await expect(f.password).toHaveAttribute("aria-invalid", "true");
  await expect(f.form.locator(".form-error")).toHaveCount(0);
  // …what was typed refilled, except the password.
  await expect(f.email).toHaveValue(email);
  await expect(f.displayName).toHaveValue(displayName);
  await expect(f.password).toHaveValue("");
  await expect(f.acceptTerms).toBeChecked();
  await expect(f.acceptPrivacy).toBeChecked();

  expect(urls.filter(carriesPassword), "URLs that carry a password").toEqual([]);

  await f.password.fill(PASSWORD);
  await f.acceptTerms.check();
  await f.acceptPrivacy.check();
  await f.submit.click();
  await expect(page).toHaveURL(/\/register\/check-inbox$/);
  await expect(page.locator("main h1")).toHaveText("Check your inbox");

  expect(urls.filter(carriesPassword), "URLs that carry a password").toEqual([]);
});

test("confirm the address from the email without JavaScript", async ({ page }) => {
  const started = Date.now();
  const account = await newAccount(page, "verify");

  const mail = await waitForEmail(account.email, { subjectIncludes: "Confirm your email", after: started });
  const link = linkFrom(mail, "/verify-email?token=");

  await page.goto(link);
  const confirm = page.locator("form.verify-email-form").getByRole("button", { name: "Confirm my email address" });
  await confirm.click();
  await expect(page).toHaveURL(/\/verify-email\?done=verify_email$/);
  await expect(page.locator(".form-success")).toHaveText("Your email address is confirmed.");
  await expect(page.locator("form.verify-email-form")).toHaveCount(0);
});

test("sign in and out without JavaScript", async ({ page }) => {
  const account = await newAccount(page, "signin");

  await page.goto("/login");
  const f = loginForm(page);
  await f.email.fill(account.email);
  await f.password.fill("not the right password at all");
  await f.submit.click();
  await expect(page).toHaveURL(/\/login\?.*__err=/);
  await expect(f.error).toHaveText(WRONG_CREDENTIALS);
  await expect(f.email).toHaveValue(account.email);
  await expect(f.password).toHaveValue("");
  // Soft: a header missing here should not hide whether signing in itself works.
  await expect.soft(header(page).signInLink, "the header's Sign in link, without JavaScript").toHaveText("Sign in");

  await f.password.fill(account.password);
  await f.submit.click();
  await expect(page).toHaveURL(/\/$/);
  await expect(header(page).userName, "the signed-in header, without JavaScript").toHaveText(account.displayName);
  await expect(header(page).signInLink).toHaveCount(0);

  await header(page).signOut.click();
  await expect(page).toHaveURL(/\/$/);
  await expect(header(page).signInLink).toHaveText("Sign in");
  await expect(header(page).userMenu).toHaveCount(0);
});

test("forgot password without JavaScript", async ({ page }) => {
  const account = await newAccount(page, "forgot");
  const started = Date.now();

  await page.goto("/forgot-password");
  const forgot = page.locator("form.forgot-password-form");
  await forgot.locator('input[name="email"]').fill(account.email);
  await forgot.getByRole("button", { name: "Send reset link" }).click();
  await expect(page).toHaveURL(/\/forgot-password\?done=request_password_reset$/);
  await expect(page.locator(".form-success")).toHaveText(
    "If an account exists for that address, we sent a link to reset its password. It expires in 1 hour.",
  );
  await expect(page.locator("form.forgot-password-form")).toHaveCount(0);

  // The post really asked for the link.
  const mail = await waitForEmail(account.email, { subjectIncludes: "Reset your", after: started });
  expect(mail.subject).toBe("Reset your Nest Egg password");
});
