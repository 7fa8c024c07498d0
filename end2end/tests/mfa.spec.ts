import fs from "node:fs/promises";
import type { Page } from "@playwright/test";
import { generate } from "otplib";
import { expect, test, waitForHydration, type BrowserProblems } from "./fixtures";
import { linkFrom, waitForEmail } from "./mail";
import {
  serverFnAnswer,
  submit,
  expectSignedIn,
  expectSignedOut,
  register,
  confirmEmail,
  submitPassword,
  signInWithPassword,
  signOut,
} from "./journeys";
import jsQR from "jsqr";
import { PNG } from "pngjs";

// Two-factor authentication (TOTP) in the browser: setting it up from the QR code, the code step of
// signing in, backup codes, moving to a new phone, and turning it off again, with the email each change sends. otplib plays
// the authenticator app. Wrong codes count toward the same per-address lock-out as wrong passwords, so
// every test signs up its own account; playwright.config.ts raises the per-IP limit of the code step.

const STEP_SECONDS = 30;
/** Crockford base32 (no i, l, o, u), `xxxxx-xxxxx`. */
const BACKUP_CODE = /^[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}$/;
/** The setup key: 160 bits of base32, in eight groups of four. */
const MANUAL_KEY = /^[A-Z2-7]{4}( [A-Z2-7]{4}){7}$/;
/** "On since 22 November 2026 at 17:05 UTC." */
const ON_SINCE = /^On since .+\.$/;

const SUBJECT_ON = "Two-factor authentication is on for your Nest Egg account";
const SUBJECT_BACKUP_CODE_USED = "A backup code was used to sign in to Nest Egg";
const SUBJECT_OFF = "Two-factor authentication was turned off for your Nest Egg account";
const SUBJECT_MOVED = "Two-factor authentication for Nest Egg moved to a new authenticator";

const WRONG_SETUP_CODE =
  "That code didn't match. Make sure your phone sets its clock automatically, then enter the newest code.";
const WRONG_MOVE_CODE =
  "That code didn't match. Make sure the new phone sets its clock automatically, then enter the newest code its app shows.";
const wrongSignInCode = (triesLeft: number) =>
  `That code didn't work. Enter the newest code from your app, or use a backup code. ${triesLeft} ${
    triesLeft === 1 ? "try" : "tries"
  } left.`;

function timeStep(ms: number): number {
  return Math.floor(ms / 1000 / STEP_SECONDS);
}

/**
 * The authenticator app, for one setup key. The server takes a code for the time step before, at or
 * after its own, but never one for a step at or before the last step it accepted for the account
 * (replay protection; turning two-factor on uses up the step of its first code). So each code handed
 * out here is for a step newer than the one before, no further ahead than the next step: when that
 * step is used already, it waits (real time, at most 30 s) for the clock to reach it.
 */
class Authenticator {
  readonly secret: string;
  private lastStep: number;

  constructor(secret: string, lastStep = Number.NEGATIVE_INFINITY) {
    this.secret = secret;
    this.lastStep = lastStep;
  }

  /**
   * The app on a new phone that takes over from this one: the server's replay protection is per
   * account, not per secret, so it too needs a step newer than the last one this app used.
   */
  successor(secret: string): Authenticator {
    return new Authenticator(secret, this.lastStep);
  }

  /** A code the server takes now (each call uses up one time step). */
  async freshCode(page: Page): Promise<string> {
    for (;;) {
      const now = timeStep(Date.now());
      const step = Math.max(this.lastStep + 1, now);
      if (step <= now + 1) {
        this.lastStep = step;
        return generate({ secret: this.secret, epoch: step * STEP_SECONDS });
      }
      // The next step is used up already: wait until the clock is in it.
      await page.waitForTimeout((now + 1) * STEP_SECONDS * 1000 - Date.now() + 250);
    }
  }

  /** Six digits that are not the code of any step near now. */
  async wrongCode(): Promise<string> {
    const now = timeStep(Date.now());
    const near = await Promise.all(
      [-2, -1, 0, 1, 2].map((offset) => generate({ secret: this.secret, epoch: (now + offset) * STEP_SECONDS })),
    );
    for (let n = 0; ; n++) {
      const code = String(n).padStart(6, "0");
      if (!near.includes(code)) return code;
    }
  }
}

/** Lets the browser's "Failed to load resource … status of 400" for a refused call to `/api/<endpoint>` pass. */
function allowRefused(problems: BrowserProblems, endpoint: string): void {
  problems.allowConsoleError(
    ({ text, url }) => /status of 400\b/.test(text) && new URL(url, "http://x").pathname === `/api/${endpoint}`,
  );
}


/** The second step of signing in (/login/two-factor). */
function codeStep(page: Page) {
  const totp = page.locator("form.totp-form");
  const backup = page.locator("form.backup-code-form");
  return {
    totpForm: totp,
    code: totp.getByLabel("6-digit code", { exact: true }),
    codeError: page.locator("#two-factor-code-error"),
    signIn: totp.getByRole("button", { name: "Sign in" }),
    useBackupCode: page.getByRole("link", { name: "Use a backup code" }),
    backupCode: backup.getByLabel("Backup code", { exact: true }),
    backupSignIn: backup.getByRole("button", { name: "Sign in" }),
  };
}

/** The password was right: the browser is on the code step, and signed in to nothing yet. */
async function expectOnCodeStep(page: Page): Promise<void> {
  await expect(page).toHaveURL(/\/login\/two-factor$/);
  await expect(page.locator("main h1")).toHaveText("Two-factor authentication");
  await expect(codeStep(page).code).toBeVisible();
  await expectSignedOut(page);
}

/** /settings/security/two-factor. */
function twoFactorPage(page: Page) {
  const enable = page.locator("form.enable-two-factor-form");
  const disable = page.locator("form.disable-two-factor-form");
  const move = page.locator("form.confirm-replacement-form");
  const panel = page.locator(".backup-codes-panel");
  const status = page.locator(".two-factor-status");
  return {
    startSetup: page
      .locator("form.start-setup-form")
      .getByRole("button", { name: "Set up two-factor authentication" }),
    qrCode: page.locator(".two-factor-setup .qr-code"),
    manualKey: page.locator(".two-factor-setup code.manual-key"),
    setupCode: enable.getByLabel("6-digit code", { exact: true }),
    setupCodeError: page.locator("#enable-code-error"),
    turnOn: enable.getByRole("button", { name: "Turn on two-factor authentication" }),
    panel,
    backupCodes: panel.locator("code.backup-code"),
    download: panel.getByRole("link", { name: "Download as .txt" }),
    print: panel.getByRole("button", { name: "Print" }),
    savedThem: panel.getByLabel("I have saved these codes"),
    continue: panel.getByRole("button", { name: "Continue" }),
    status,
    state: status.locator(".two-factor-state"),
    remaining: status.locator(".backup-codes-remaining"),
    startMove: page.locator("form.start-replacement-form").getByRole("button", { name: "Set up a new phone" }),
    moveQrCode: page.locator(".two-factor-move .qr-code"),
    moveKey: page.locator(".two-factor-move code.manual-key"),
    moveCode: move.getByLabel("6-digit code from the new phone", { exact: true }),
    moveCodeError: page.locator("#replacement-code-error"),
    confirmMove: move.getByRole("button", { name: "Move to this phone" }),
    moved: page.locator(".two-factor-move .form-success"),
    disablePassword: disable.getByLabel("Your password", { exact: true }),
    disableCode: disable.getByLabel("Code from your app, or a backup code", { exact: true }),
    turnOff: disable.getByRole("button", { name: "Turn off two-factor authentication" }),
  };
}

/** The summary on /settings/security. */
function securitySummary(page: Page) {
  const summary = page.locator(".two-factor-summary");
  return {
    state: summary.locator(".two-factor-state"),
    remaining: summary.locator(".backup-codes-remaining"),
    setUp: summary.getByRole("link", { name: "Set up two-factor authentication" }),
    manage: summary.getByRole("link", { name: "Manage two-factor authentication" }),
  };
}

/** Ticks "I have saved these codes" (the Continue button stays disabled until then) and continues. */
async function confirmCodesSaved(page: Page): Promise<void> {
  const s = twoFactorPage(page);
  await expect(s.continue).toBeDisabled();
  await expect(async () => {
    await s.savedThem.check();
    await expect(s.continue).toBeEnabled({ timeout: 1_000 });
  }).toPass();
  await s.continue.click();
  await expect(s.panel).toHaveCount(0);
  await expect(s.status).toBeVisible();
}

/** Turns two-factor authentication on for the signed-in account, without the checks of the main test. */
async function turnOnTwoFactor(page: Page): Promise<Authenticator> {
  const s = twoFactorPage(page);
  await page.goto("/settings/security/two-factor");
  await waitForHydration(page);
  expect((await submit(page, s.startSetup, "start_two_factor_setup")).ok()).toBe(true);
  await expect(s.manualKey).toHaveText(MANUAL_KEY);
  const app = new Authenticator(((await s.manualKey.textContent()) ?? "").replace(/\s/g, ""));
  await s.setupCode.fill(await app.freshCode(page));
  expect((await submit(page, s.turnOn, "enable_two_factor")).ok()).toBe(true);
  await expect(s.backupCodes).toHaveCount(10);
  await confirmCodesSaved(page);
  await expect(s.state).toHaveText(ON_SINCE);
  return app;
}

test.describe("two-factor authentication", () => {
  test("set up with the QR code, sign in with a code and with a backup code, then turn it off", async ({
    page,
    problems,
  }) => {
    // Up to 30 s of it may be waiting for a new time step (see Authenticator).
    test.setTimeout(150_000);
    allowRefused(problems, "enable_two_factor");
    allowRefused(problems, "verify_sign_in_code");
    const s = twoFactorPage(page);
    const summary = securitySummary(page);
    const step = codeStep(page);

    const registered = Date.now();
    const account = await register(page, "mfa-journey");
    await confirmEmail(page, account, registered);
    await signInWithPassword(page, account);
    await expect(page).toHaveURL(/\/$/);
    await expectSignedIn(page, account.displayName);

    // The security settings say it is off and lead to its page.
    await page.goto("/settings/security");
    await waitForHydration(page);
    await expect(summary.state).toHaveText(/^Off\b/);
    await summary.setUp.click();
    await expect(page).toHaveURL(/\/settings\/security\/two-factor$/);
    await expect(page.locator("main h1")).toHaveText("Two-factor authentication");

    // Setup shows the secret as a QR code and as a key to type, both for this account.
    expect((await submit(page, s.startSetup, "start_two_factor_setup")).ok()).toBe(true);
    await expect(s.manualKey).toHaveText(MANUAL_KEY);
    const secret = ((await s.manualKey.textContent()) ?? "").replace(/\s/g, "");
    const uri = `otpauth://totp/Nest%20Egg:${encodeURIComponent(account.email)}?secret=${secret}&issuer=Nest%20Egg&algorithm=SHA1&digits=6&period=30`;
    await expect(s.qrCode).toHaveAttribute("data-otpauth-uri", uri);
    await expect(page.locator("a.otpauth-link")).toHaveAttribute("href", uri);
    await expect(s.qrCode.locator("svg")).toBeVisible();
    // The picture itself, as the browser drew it, reads back as that URI (what a phone camera sees).
    const png = PNG.sync.read(await s.qrCode.screenshot());
    const scanned = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
    expect(scanned?.data, "the text of the QR code").toBe(uri);
    const app = new Authenticator(secret);

    // A wrong code is refused next to the field, and nothing is turned on.
    await s.setupCode.fill(await app.wrongCode());
    // The page reloads its status after every action: wait for that before typing again.
    const reloaded = serverFnAnswer(page, "two_factor_status");
    const refused = await submit(page, s.turnOn, "enable_two_factor");
    expect(refused.status()).toBe(400);
    await reloaded;
    await expect(s.setupCodeError).toHaveText(WRONG_SETUP_CODE);
    await expect(s.setupCode).toHaveAttribute("aria-invalid", "true");
    await expect(s.backupCodes).toHaveCount(0);

    // The code the app shows now turns it on, and the backup codes are shown, once.
    await s.setupCode.fill(await app.freshCode(page));
    const turnedOn = Date.now();
    expect((await submit(page, s.turnOn, "enable_two_factor")).ok()).toBe(true);
    await expect(s.panel.locator("h2")).toHaveText("Save your backup codes");
    // The form used is hidden under the panel: the focus moves to it, for screen readers.
    await expect(s.panel.locator("h2")).toBeFocused();
    await expect(s.backupCodes).toHaveCount(10);
    const codes = await s.backupCodes.allTextContents();
    for (const code of codes) expect(code).toMatch(BACKUP_CODE);
    expect(new Set(codes).size, "ten different backup codes").toBe(10);
    await expect(s.status).toBeHidden();
    await expect(s.print).toBeVisible();

    // They download as a text file holding every code.
    await expect(s.download).toHaveAttribute("download", "nest-egg-backup-codes.txt");
    const downloading = page.waitForEvent("download");
    await s.download.click();
    const download = await downloading;
    expect(download.suggestedFilename()).toBe("nest-egg-backup-codes.txt");
    const saved = test.info().outputPath("backup-codes.txt");
    await download.saveAs(saved);
    const file = await fs.readFile(saved, "utf8");
    expect(file).toContain(`Nest Egg backup codes for ${account.email}`);
    for (const code of codes) expect(file).toContain(code);

    await confirmCodesSaved(page);
    await expect(s.state).toHaveText(ON_SINCE);
    await expect(s.remaining).toHaveText("10 unused backup codes left.");

    const on = await waitForEmail(account.email, { subjectIncludes: SUBJECT_ON, after: turnedOn });
    expect(on.subject).toBe(SUBJECT_ON);
    const origin = new URL(page.url()).origin;
    expect(linkFrom(on, "/settings/security/two-factor")).toBe(`${origin}/settings/security/two-factor`);

    // Signing in now takes a code after the password, and then goes where the sign-in was asked for.
    await signOut(page);
    await page.goto("/settings/security");
    await waitForHydration(page);
    await page.locator(".sign-in-prompt").getByRole("link", { name: "Sign in" }).click();
    await expect(page).toHaveURL(/\/login\?next=\/settings\/security$/);
    await waitForHydration(page);
    await submitPassword(page, account);
    await expectOnCodeStep(page);
    const firstSignInCode = await app.freshCode(page);
    await step.code.fill(firstSignInCode);
    expect((await submit(page, step.signIn, "verify_sign_in_code")).ok()).toBe(true);
    await expect(page).toHaveURL(/\/settings\/security$/);
    await expectSignedIn(page, account.displayName);
    await expect(summary.state).toHaveText(ON_SINCE);
    await expect(summary.remaining).toHaveText("10 unused backup codes left.");

    // The same code does not work twice; a backup code does, once.
    await signOut(page);
    await signInWithPassword(page, account);
    await expectOnCodeStep(page);
    await step.code.fill(firstSignInCode);
    expect((await submit(page, step.signIn, "verify_sign_in_code")).status()).toBe(400);
    await expect(step.codeError).toHaveText(wrongSignInCode(4));
    await expectOnCodeStep(page);
    await step.useBackupCode.click();
    await expect(page).toHaveURL(/\/login\/two-factor\?backup=1$/);
    await step.backupCode.fill(codes[0]);
    const usedBackupCode = Date.now();
    expect((await submit(page, step.backupSignIn, "verify_sign_in_code")).ok()).toBe(true);
    await expect(page).toHaveURL(/\/$/);
    await expectSignedIn(page, account.displayName);

    const backupMail = await waitForEmail(account.email, {
      subjectIncludes: SUBJECT_BACKUP_CODE_USED,
      after: usedBackupCode,
    });
    expect(backupMail.subject).toBe(SUBJECT_BACKUP_CODE_USED);
    expect(backupMail.text).toContain("you have 9 left");

    await page.goto("/settings/security");
    await waitForHydration(page);
    await expect(summary.remaining).toHaveText("9 unused backup codes left.");
    await summary.manage.click();
    await expect(page).toHaveURL(/\/settings\/security\/two-factor$/);
    await expect(s.remaining).toHaveText("9 unused backup codes left.");

    // Turning it off takes the password and a current code.
    await s.disablePassword.fill(account.password);
    await s.disableCode.fill(await app.freshCode(page));
    const turnedOff = Date.now();
    expect((await submit(page, s.turnOff, "disable_two_factor")).ok()).toBe(true);
    await expect(page.locator(".form-success")).toHaveText(
      "Two-factor authentication is off. Signing in now needs only your password.",
    );
    await expect(s.startSetup).toBeVisible();

    const off = await waitForEmail(account.email, { subjectIncludes: SUBJECT_OFF, after: turnedOff });
    expect(off.subject).toBe(SUBJECT_OFF);

    await page.goto("/settings/security");
    await waitForHydration(page);
    await expect(summary.state).toHaveText(/^Off\b/);

    // And the password alone signs in again.
    await signOut(page);
    await signInWithPassword(page, account);
    await expect(page).toHaveURL(/\/$/);
    await expectSignedIn(page, account.displayName);
  });

  test("a wrong code at sign-in is refused next to the field and the sign-in waits for the right one", async ({
    page,
    problems,
  }) => {
    allowRefused(problems, "verify_sign_in_code");
    const registered = Date.now();
    const account = await register(page, "mfa-wrong-code");
    // Two-factor is set up on a confirmed address only.
    await confirmEmail(page, account, registered);
    await signInWithPassword(page, account);
    await expectSignedIn(page, account.displayName);
    const app = await turnOnTwoFactor(page);
    await signOut(page);

    await signInWithPassword(page, account);
    await expectOnCodeStep(page);
    const step = codeStep(page);
    await step.code.fill(await app.wrongCode());
    const refused = await submit(page, step.signIn, "verify_sign_in_code");
    expect(refused.status()).toBe(400);
    await expect(step.codeError).toHaveText(wrongSignInCode(4));
    await expect(step.code).toHaveAttribute("aria-invalid", "true");
    await expectOnCodeStep(page);

    // The sign-in is still waiting (in the session, not only in the page)…
    await page.reload();
    await waitForHydration(page);
    await expectOnCodeStep(page);

    // …and the right code completes it.
    await step.code.fill(await app.freshCode(page));
    expect((await submit(page, step.signIn, "verify_sign_in_code")).ok()).toBe(true);
    await expect(page).toHaveURL(/\/$/);
    await expectSignedIn(page, account.displayName);
  });

  test("move to a new phone: the new app's first code moves it and the old app stops working", async ({
    page,
    problems,
  }) => {
    // Up to 30 s of it may be waiting for a new time step (see Authenticator).
    test.setTimeout(150_000);
    allowRefused(problems, "confirm_two_factor_replacement");
    allowRefused(problems, "verify_sign_in_code");
    const s = twoFactorPage(page);
    const registered = Date.now();
    const account = await register(page, "mfa-move");
    await confirmEmail(page, account, registered);
    await signInWithPassword(page, account);
    await expectSignedIn(page, account.displayName);
    const oldApp = await turnOnTwoFactor(page);

    // The new phone gets a secret of its own, as a QR code and as a key to type.
    expect((await submit(page, s.startMove, "start_two_factor_replacement")).ok()).toBe(true);
    await expect(s.moveKey).toHaveText(MANUAL_KEY);
    const newApp = oldApp.successor(((await s.moveKey.textContent()) ?? "").replace(/\s/g, ""));
    expect(newApp.secret).not.toBe(oldApp.secret);
    await expect(s.moveQrCode.locator("svg")).toBeVisible();
    await expect(s.state).toHaveText(ON_SINCE);

    // A wrong code is refused next to the field, and nothing moves.
    await s.moveCode.fill(await newApp.wrongCode());
    const reloaded = serverFnAnswer(page, "two_factor_status");
    expect((await submit(page, s.confirmMove, "confirm_two_factor_replacement")).status()).toBe(400);
    await reloaded;
    await expect(s.moveCodeError).toHaveText(WRONG_MOVE_CODE);
    await expect(s.moveCode).toHaveAttribute("aria-invalid", "true");

    // The new app's code moves it, and the owner is told by email.
    await s.moveCode.fill(await newApp.freshCode(page));
    const moved = Date.now();
    expect((await submit(page, s.confirmMove, "confirm_two_factor_replacement")).ok()).toBe(true);
    await expect(s.moved).toHaveText(
      "Two-factor authentication moved to your new phone. Codes from the old one no longer work.",
    );
    await expect(s.startMove).toBeVisible();
    await expect(s.remaining).toHaveText("10 unused backup codes left.");
    const mail = await waitForEmail(account.email, { subjectIncludes: SUBJECT_MOVED, after: moved });
    expect(mail.subject).toBe(SUBJECT_MOVED);

    // Signing in, the old app's code is refused and the new one's works.
    await signOut(page);
    await signInWithPassword(page, account);
    await expectOnCodeStep(page);
    const step = codeStep(page);
    await step.code.fill(await oldApp.freshCode(page));
    expect((await submit(page, step.signIn, "verify_sign_in_code")).status()).toBe(400);
    await expect(step.codeError).toHaveText(wrongSignInCode(4));
    await step.code.fill(await newApp.freshCode(page));
    expect((await submit(page, step.signIn, "verify_sign_in_code")).ok()).toBe(true);
    await expect(page).toHaveURL(/\/$/);
    await expectSignedIn(page, account.displayName);
  });
  test("with two-factor on, moving to another email address takes a code too", async ({ page, problems }) => {
    // Up to 30 s of it may be waiting for a new time step (see Authenticator).
    test.setTimeout(150_000);
    allowRefused(problems, "change_email");
    const registered = Date.now();
    const account = await register(page, "mfa-new-address");
    await confirmEmail(page, account, registered);
    await signInWithPassword(page, account);
    await expectSignedIn(page, account.displayName);
    const app = await turnOnTwoFactor(page);

    await page.goto("/settings/profile");
    await waitForHydration(page);
    const form = page.locator("form.change-email-form");
    const code = form.locator("#change-email-code");
    const change = form.getByRole("button", { name: "Change email address" });
    const newEmail = account.email.replace("@", ".moved@");
    await expect(code).toBeVisible();
    await form.locator("#change-email-new-email").fill(newEmail);
    await form.locator("#change-email-password").fill(account.password);

    // A wrong code is refused next to its field; what was typed stays.
    await code.fill(await app.wrongCode());
    expect((await submit(page, change, "change_email")).status()).toBe(400);
    await expect(form.locator("#change-email-code-error")).toHaveText(
      "That code didn't work. Enter the current code from your app, or an unused backup code.",
    );
    await expect(form.locator("#change-email-new-email")).toHaveValue(newEmail);

    // The app's code sends the link to the new address.
    await form.locator("#change-email-password").fill(account.password);
    await code.fill(await app.freshCode(page));
    const requested = Date.now();
    expect((await submit(page, change, "change_email")).ok()).toBe(true);
    await expect(page.locator(".form-success")).toHaveText(
      "We sent a confirmation link to the new address. Your address changes when you open it.",
    );
    const mail = await waitForEmail(newEmail, { subjectIncludes: "Confirm your new email", after: requested });
    expect(linkFrom(mail, "/confirm-email-change?token=")).toContain("/confirm-email-change?token=");
  });
});
