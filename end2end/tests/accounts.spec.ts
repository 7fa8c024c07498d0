import type { Locator, Page, Response } from "@playwright/test";
import { expect, test, waitForHydration, type BrowserProblems } from "./fixtures";
import { linkFrom, waitForEmail } from "./mail";
import { PASSWORD, NEW_PASSWORD, WRONG_CREDENTIALS, uniqueEmail, header } from "./accounts-common";

// Account flows in the browser, with the email the app really sends: the test SMTP server started by
// global-setup.ts keeps every message, and ./mail reads them. All tests share one server and one IP
// (playwright.config.ts raises the per-IP limits); lock-outs count per address, so every test signs
// up its own addresses.


const LOCKED_OUT = "Too many attempts — try again later. If you have forgotten your password, you can reset it.";


/** Lets the browser's "Failed to load resource … status of 400" for a refused call to `/api/<endpoint>` pass. */
function allowRefused(problems: BrowserProblems, endpoint: string): void {
  problems.allowConsoleError(
    ({ text, url }) => /status of 400\b/.test(text) && new URL(url, "http://x").pathname === `/api/${endpoint}`,
  );
}

/** Clicks `button` and returns the answer of the server function call it makes (POST /api/<endpoint>). */
async function submit(page: Page, button: Locator, endpoint: string): Promise<Response> {
  const answered = page.waitForResponse(
    (r) => r.request().method() === "POST" && new URL(r.url()).pathname === `/api/${endpoint}`,
  );
  await button.click();
  return answered;
}


async function expectSignedIn(page: Page, displayName: string): Promise<void> {
  await expect(header(page).userName).toHaveText(displayName);
  await expect(header(page).signInLink).toHaveCount(0);
}

async function expectSignedOut(page: Page): Promise<void> {
  await expect(header(page).signInLink).toHaveText("Sign in");
  await expect(header(page).userMenu).toHaveCount(0);
}

function registerForm(page: Page) {
  const form = page.locator("form.register-form");
  return {
    form,
    email: form.locator('input[name="email"]'),
    displayName: form.locator('input[name="display_name"]'),
    password: form.locator('input[name="password"]'),
    acceptTerms: form.locator('input[name="accept_terms"]'),
    acceptPrivacy: form.locator('input[name="accept_privacy"]'),
    termsError: page.locator("#register-accept-terms-error"),
    meter: form.locator("meter.strength-meter"),
    strengthLabel: form.locator(".strength-label"),
    submit: form.getByRole("button", { name: "Create account" }),
  };
}

interface Account {
  email: string;
  displayName: string;
  password: string;
}

/** Signs up through the form; ends on "Check your inbox" (registering does not sign in). */
async function register(page: Page, account: Account): Promise<void> {
  await page.goto("/register");
  await waitForHydration(page);
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

/** Opens /login and submits the form; returns the server's answer. */
async function signIn(page: Page, email: string, password: string): Promise<Response> {
  await page.goto("/login");
  await waitForHydration(page);
  return submitSignIn(page, email, password);
}

/** Submits the sign-in form of the page that is already open. */
async function submitSignIn(page: Page, email: string, password: string): Promise<Response> {
  const f = loginForm(page);
  await f.email.fill(email);
  await f.password.fill(password);
  return submit(page, f.submit, "sign_in");
}

async function newAccount(page: Page, name: string): Promise<Account> {
  const account = { email: uniqueEmail(name), displayName: `E2E ${name}`, password: PASSWORD };
  await register(page, account);
  return account;
}

test("register, confirm the address from the email, and the banner goes away", async ({ page, problems }) => {
  allowRefused(problems, "register");
  const email = uniqueEmail("register");
  const displayName = "Ada Register";
  const started = Date.now();

  await page.goto("/register");
  await waitForHydration(page);
  const f = registerForm(page);
  await f.email.fill(email);
  await f.displayName.fill(displayName);

  // The strength meter scores what is typed (the server does, ~300 ms after typing stops).
  await expect(async () => {
    await f.password.fill("password");
    await expect(f.strengthLabel).toHaveText("Strength: weak", { timeout: 2_000 });
  }).toPass({ timeout: 20_000 });
  const weakScore = await f.meter.getAttribute("value");
  await f.password.fill(PASSWORD);
  await expect(f.strengthLabel).toHaveText("Strength: strong");
  await expect(f.meter).toHaveAttribute("value", "4");
  expect(weakScore, "the meter's value for a weak password").not.toBe("4");
  await expect(f.form.locator(".strength-problem")).toHaveCount(0);

  // Terms not accepted: the browser's own check stops the form first…
  await f.acceptPrivacy.check();
  await expect(f.acceptTerms).not.toBeChecked();
  expect(await f.acceptTerms.evaluate((el) => (el as HTMLInputElement).validity.valueMissing)).toBe(true);
  // …so switch that off, to see the server's answer shown next to the box.
  await f.form.evaluate((form) => {
    (form as HTMLFormElement).noValidate = true;
  });
  const refused = await submit(page, f.submit, "register");
  expect(refused.status()).toBe(400);
  await expect(f.termsError).toHaveText("Please accept the terms of service to create an account.");
  await expect(f.acceptTerms).toHaveAttribute("aria-invalid", "true");
  await expect(page).toHaveURL(/\/register$/);

  await f.acceptTerms.check();
  await f.password.fill(PASSWORD);
  await f.submit.click();
  await expect(page).toHaveURL(/\/register\/check-inbox$/);
  await expect(page.locator("main h1")).toHaveText("Check your inbox");

  // The refused attempt created nothing: this is the welcome email, not "you already have an account".
  const mail = await waitForEmail(email, { subjectIncludes: "Confirm your email", after: started });
  expect(mail.subject).toBe("Confirm your email for Nest Egg");
  expect(mail.text).toContain(`Hi ${displayName},`);
  const link = linkFrom(mail, "/verify-email?token=");

  // Registering does not sign in; once signed in, the banner asks to confirm the address.
  await expectSignedOut(page);
  await signIn(page, email, PASSWORD);
  await expect(page).toHaveURL(/\/$/);
  await expectSignedIn(page, displayName);
  const banner = page.locator(".verification-banner");
  await expect(banner).toBeVisible();
  await expect(banner.locator(".verification-email")).toHaveText(email);

  // Opening the link only shows a button; confirming is a click.
  await page.goto(link);
  await waitForHydration(page);
  await expect(page.locator(".verification-banner")).toBeVisible();
  const confirm = page.locator("form.verify-email-form").getByRole("button", { name: "Confirm my email address" });
  await submit(page, confirm, "verify_email");
  await expect(page.locator(".form-success")).toHaveText("Your email address is confirmed.");
  await expect(page.locator(".verification-banner")).toHaveCount(0);

  // And it stays confirmed for the server too.
  await page.reload();
  await waitForHydration(page);
  await expectSignedIn(page, displayName);
  await expect(page.locator(".verification-banner")).toHaveCount(0);
});

test("sign in shows the user menu and sign out returns to the signed-out header", async ({ page }) => {
  const account = await newAccount(page, "signin");

  const answer = await signIn(page, account.email, account.password);
  expect(answer.ok(), `sign_in answered ${answer.status()}`).toBe(true);
  await expect(page).toHaveURL(/\/$/);
  await expectSignedIn(page, account.displayName);

  await submit(page, header(page).signOut, "sign_out");
  await expectSignedOut(page);

  // The session ended on the server, not only in the page.
  await page.reload();
  await waitForHydration(page);
  await expectSignedOut(page);
});

test("a sign-out that fails says so, and the header still shows who is signed in", async ({ page, problems }) => {
  const account = await newAccount(page, "signout-fails");
  const answer = await signIn(page, account.email, account.password);
  expect(answer.ok()).toBe(true);
  await expectSignedIn(page, account.displayName);

  // The app's own answer when its session store is out of reach.
  problems.allowConsoleError(
    ({ text, url }) => /status of 503\b/.test(text) && new URL(url, "http://x").pathname === "/api/sign_out",
  );
  await page.route("**/api/sign_out", (route) =>
    route.fulfill({ status: 503, contentType: "application/json", body: JSON.stringify({ code: "unavailable" }) }),
  );
  const refused = await submit(page, header(page).signOut, "sign_out");
  expect(refused.status()).toBe(503);
  await expect(header(page).userMenu.locator(".form-error")).toHaveText(
    "You are still signed in. Nest Egg is temporarily unavailable. Please try again in a moment.",
  );
  await expectSignedIn(page, account.displayName);

  // Once it works, the error goes with the menu.
  await page.unroute("**/api/sign_out");
  await submit(page, header(page).signOut, "sign_out");
  await expectSignedOut(page);
  await expect(page.locator("header.site-header .form-error")).toHaveCount(0);
});

test("an error page from something in front of the app says it could not be reached, not that the form was wrong", async ({
  page,
  problems,
}) => {
  // A reverse proxy's or load balancer's own page, as when every instance is down. (The app's own
  // refusals are error objects; this one is not, and was shown as "The form was incomplete or
  // malformed. Please check it and try again.")
  problems.allowConsoleError(
    ({ text, url }) => /status of 502\b/.test(text) && new URL(url, "http://x").pathname === "/api/sign_in",
  );
  await page.route("**/api/sign_in", (route) =>
    route.fulfill({ status: 502, contentType: "text/html", body: "<html><body><h1>502 Bad Gateway</h1></body></html>" }),
  );
  await page.goto("/login");
  await waitForHydration(page);
  const answer = await submitSignIn(page, "someone@example.org", "any password at all");
  expect(answer.status()).toBe(502);
  const f = loginForm(page);
  await expect(f.error).toHaveText("Nest Egg is temporarily unavailable. Please try again in a moment.");
  await expect(f.email).toHaveValue("someone@example.org");
  await expectSignedOut(page);
});

test("wrong passwords lock the account, even the right one is refused, and the owner is told", async ({
  page,
  problems,
}) => {
  allowRefused(problems, "sign_in");
  const account = await newAccount(page, "lockout");
  const started = Date.now();

  await page.goto("/login");
  await waitForHydration(page);
  const f = loginForm(page);
  for (let attempt = 1; attempt <= 4; attempt++) {
    const answer = await submitSignIn(page, account.email, `wrong password number ${attempt}`);
    expect(answer.status(), `wrong attempt ${attempt}`).toBe(400);
    await expect(f.error).toHaveText(WRONG_CREDENTIALS);
  }
  const fifth = await submitSignIn(page, account.email, "wrong password number 5");
  expect(fifth.status()).toBe(400);
  await expect(f.error).toHaveText(LOCKED_OUT);

  // The right password does not get in while the lock lasts.
  const right = await submitSignIn(page, account.email, account.password);
  expect(right.status()).toBe(400);
  expect(await right.text()).toContain(LOCKED_OUT);
  await expect(f.error).toHaveText(LOCKED_OUT);
  await expect(page).toHaveURL(/\/login$/);
  await expectSignedOut(page);

  const mail = await waitForEmail(account.email, { subjectIncludes: "locked", after: started });
  expect(mail.subject).toBe("Your Nest Egg account is temporarily locked");
  expect(mail.text).toContain("paused sign-ins");
  expect(linkFrom(mail, "/forgot-password")).toBe(`${new URL(page.url()).origin}/forgot-password`);
});

test("forgot password: the emailed link sets a new password, and only the new one signs in", async ({
  page,
  problems,
}) => {
  allowRefused(problems, "sign_in");
  const account = await newAccount(page, "reset");
  const started = Date.now();

  await page.goto("/login");
  await waitForHydration(page);
  await page.getByRole("link", { name: "Forgot your password?" }).click();
  await expect(page).toHaveURL(/\/forgot-password$/);
  await waitForHydration(page);
  const forgot = page.locator("form.forgot-password-form");
  await forgot.locator('input[name="email"]').fill(account.email);
  await submit(page, forgot.getByRole("button", { name: "Send reset link" }), "request_password_reset");
  await expect(page.locator(".form-success")).toContainText("If an account exists for that address, we sent a link");

  const mail = await waitForEmail(account.email, { subjectIncludes: "Reset your", after: started });
  expect(mail.subject).toBe("Reset your Nest Egg password");
  const link = linkFrom(mail, "/reset-password?token=");

  await page.goto(link);
  await waitForHydration(page);
  const reset = page.locator("form.reset-password-form");
  await reset.locator('input[name="password"]').fill(NEW_PASSWORD);
  await reset.getByRole("button", { name: "Change password" }).click();
  await expect(page).toHaveURL(/\/login\?reset=done$/);
  await expect(page.locator(".form-success")).toHaveText("Your password was changed. Sign in with the new one.");

  const changed = await waitForEmail(account.email, { subjectIncludes: "was changed", after: started });
  expect(changed.subject).toBe("Your Nest Egg password was changed");

  // The old password no longer works…
  await waitForHydration(page);
  const old = await submitSignIn(page, account.email, account.password);
  expect(old.status()).toBe(400);
  await expect(loginForm(page).error).toHaveText(WRONG_CREDENTIALS);
  await expectSignedOut(page);

  // …the new one does.
  const fresh = await submitSignIn(page, account.email, NEW_PASSWORD);
  expect(fresh.ok(), `sign_in answered ${fresh.status()}`).toBe(true);
  await expectSignedIn(page, account.displayName);
});

test("changing the password signs out the other browser but not this one", async ({
  page,
  browser,
  baseURL,
  problems,
}) => {
  const account = await newAccount(page, "change");
  const started = Date.now();

  const other = await browser.newContext({ baseURL });
  try {
    await problems.watch(other);
    const otherPage = await other.newPage();

    expect((await signIn(page, account.email, account.password)).ok()).toBe(true);
    await expectSignedIn(page, account.displayName);
    expect((await signIn(otherPage, account.email, account.password)).ok()).toBe(true);
    await expectSignedIn(otherPage, account.displayName);

    await page.goto("/settings/security");
    await waitForHydration(page);
    const form = page.locator("form.change-password-form");
    await form.locator('input[name="current_password"]').fill(account.password);
    await form.locator('input[name="new_password"]').fill(NEW_PASSWORD);
    const answer = await submit(page, form.getByRole("button", { name: "Change password" }), "change_password");
    expect(answer.ok(), `change_password answered ${answer.status()}`).toBe(true);
    await expect(page.locator(".form-success")).toHaveText("Password changed. You were signed out everywhere else.");
    // The form is emptied: no password stays in the page.
    await expect(form.locator('input[name="current_password"]')).toHaveValue("");

    // The other browser's session is gone…
    await otherPage.reload();
    await waitForHydration(otherPage);
    await expectSignedOut(otherPage);

    // …while this one stays signed in.
    await page.reload();
    await waitForHydration(page);
    await expectSignedIn(page, account.displayName);

    const mail = await waitForEmail(account.email, { subjectIncludes: "was changed", after: started });
    expect(mail.subject).toBe("Your Nest Egg password was changed");
  } finally {
    await other.close();
  }
});
