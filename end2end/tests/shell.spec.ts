import type { Page } from "@playwright/test";
import { expect, test, waitForHydration } from "./fixtures";

// Every test also fails if the page logged a console error, threw, or violated the Content
// Security Policy: the `problems` fixture in ./fixtures checks that after each test.

const CURRENCY = /^\s*\$\d{1,3}(,\d{3})*(\.\d{2})?\s*$/;

function calculator(page: Page) {
  return {
    form: page.locator("form.calculator"),
    monthly: page.locator("#calc-monthly"),
    years: page.locator("#calc-years"),
    rate: page.locator("#calc-rate"),
    amount: page.locator("output.calculator-result span.result-amount"),
    submit: page.locator("button.calculator-submit"),
  };
}

test("landing page renders the app shell and hydrates", async ({ page }) => {
  const response = await page.goto("/");
  expect(response?.status()).toBe(200);

  await expect(page).toHaveTitle(/Nest Egg/);
  const header = page.locator("header.site-header");
  await expect(header).toBeVisible();
  await expect(header.locator("a.brand")).toHaveText("Nest Egg");
  await expect(page.locator("main#main h1").first()).toBeVisible();
  await expect(page.locator("footer.site-footer")).toBeVisible();

  const calc = calculator(page);
  await expect(calc.form).toBeVisible();
  await expect(calc.monthly).toBeVisible();
  await expect(calc.years).toBeVisible();
  await expect(calc.rate).toBeVisible();
  await expect(calc.amount).toHaveText(CURRENCY);

  // Hydrating must not log errors or break the CSP (checked by the fixture after the test).
  await waitForHydration(page);
});

test("calculator responds only after hydration", async ({ page }) => {
  await page.goto("/");
  await waitForHydration(page);
  const calc = calculator(page);
  const urlBefore = page.url();

  await expect(calc.amount).toHaveText(CURRENCY);
  const before = (await calc.amount.textContent())?.trim() ?? "";
  const current = await calc.monthly.inputValue();
  const next = current === "1234" ? "4321" : "1234";

  // Input typed before the WASM has taken over is lost, so retry the typing until it takes effect.
  await expect(async () => {
    await calc.monthly.fill(next);
    await expect(calc.amount).not.toHaveText(before, { timeout: 2_000 });
  }).toPass({ timeout: 20_000 });

  await expect(calc.amount).toHaveText(CURRENCY);
  // Live reactivity, not a form submission.
  expect(page.url()).toBe(urlBefore);
});

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("without JavaScript the calculator still works as a form", async ({ page }) => {
    const response = await page.goto("/");
    expect(response?.status()).toBe(200);
    await expect(page.locator("html")).not.toHaveAttribute("data-hydrated");

    const calc = calculator(page);
    await expect(calc.amount).toHaveText(CURRENCY);
    const before = (await calc.amount.textContent())?.trim() ?? "";
    await expect(calc.monthly, "the default monthly saving must differ from the 500 typed here").not.toHaveValue(
      "500",
    );

    await calc.monthly.fill("500");
    // Nothing reacts without the WASM bundle.
    await expect(calc.amount).toHaveText(before);

    // The submit button is rendered inside <noscript>: it exists only for browsers without JavaScript.
    await expect(calc.submit).toBeVisible();
    await calc.submit.click();
    await expect(page).toHaveURL(/[?&]monthly=500(&|$)/);
    await expect(calc.amount).toHaveText(CURRENCY);
    await expect(calc.amount).not.toHaveText(before);
    await expect(page.locator("html")).not.toHaveAttribute("data-hydrated");
  });
});

test("unknown page shows the not-found page", async ({ page, problems }) => {
  const path = "/no-such-page-xyz";
  // Chromium logs the 404 of the document itself as a console error; that one is expected here.
  problems.allowConsoleError(
    ({ text, url }) => /status of 404/.test(text) && new URL(url, "http://x").pathname === path,
  );

  const response = await page.goto(path);
  expect(response?.status()).toBe(404);
  const section = page.locator("section.error-page");
  await expect(section).toBeVisible();
  await expect(section.locator("h1").first()).toBeVisible();

  const text = (await page.locator("body").innerText()).toLowerCase();
  for (const leak of ["panic", "stack", "sqlx", "rust_backtrace"]) {
    expect(text, `the not-found page must not mention "${leak}"`).not.toContain(leak);
  }

  await waitForHydration(page);
});

test("mobile navigation toggles after hydration", async ({ page }) => {
  await page.setViewportSize({ width: 375, height: 740 });
  await page.goto("/");
  const toggle = page.locator("button.nav-toggle");
  const nav = page.locator("nav#site-nav");
  await expect(toggle).toBeVisible();
  await expect(toggle).not.toHaveAttribute("aria-expanded", "true");
  await expect(nav).not.toContainClass("open");

  await waitForHydration(page);
  await expect(async () => {
    // Click only while still closed, so that a retry cannot close it again.
    if ((await toggle.getAttribute("aria-expanded")) !== "true") await toggle.click();
    await expect(nav).toContainClass("open", { timeout: 2_000 });
    await expect(toggle).toHaveAttribute("aria-expanded", "true", { timeout: 2_000 });
  }).toPass({ timeout: 20_000 });

  // And it closes again.
  await toggle.click();
  await expect(nav).not.toContainClass("open");
  await expect(toggle).not.toHaveAttribute("aria-expanded", "true");
});

test("on a phone the links are in reach until the WASM has taken the page over", async ({ page }) => {
  await page.setViewportSize({ width: 375, height: 740 });
  // The WASM is held back (as on a slow connection, or when it never loads) while the page is checked.
  let release = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  await page.route("**/*.wasm", async (route) => {
    await released;
    await route.continue();
  });
  await page.goto("/", { waitUntil: "domcontentloaded" });
  await expect(page.locator("header a.nav-sign-in")).toBeVisible();
  await expect(page.locator("button.nav-toggle")).toBeHidden();
  release();
  // Once it has, the links fold into the menu.
  await waitForHydration(page);
  await expect(page.locator("button.nav-toggle")).toBeVisible();
  await expect(page.locator("header a.nav-sign-in")).toBeHidden();
});

test("theme toggle persists across a reload", async ({ page, baseURL }) => {
  await page.goto("/");
  await waitForHydration(page);
  const html = page.locator("html");
  const toggle = page.locator("button.theme-toggle");
  const before = await html.getAttribute("data-theme");
  expect([null, "light", "dark", "system"]).toContain(before);

  // The choice is saved in a cookie by a server function (a POST from the WASM): wait for that
  // call to finish before reloading, or the reload would cancel it.
  const origin = new URL(baseURL ?? page.url()).origin;
  const saved = page
    .waitForResponse(
      (r) =>
        ["fetch", "xhr"].includes(r.request().resourceType()) &&
        r.request().method() !== "GET" &&
        new URL(r.url()).origin === origin,
      { timeout: 30_000 },
    )
    .then(
      (response) => ({ response }),
      (error: unknown) => ({ error }),
    );

  await expect(async () => {
    // Click only while unchanged, so that a retry cannot cycle past the new theme.
    if ((await html.getAttribute("data-theme")) === before) await toggle.click();
    await expect.poll(() => html.getAttribute("data-theme"), { timeout: 2_000 }).not.toBe(before);
  }).toPass({ timeout: 20_000 });
  const after = await html.getAttribute("data-theme");

  const result = await saved;
  if ("error" in result) {
    throw new Error(`no server function call (fetch POST) was seen after clicking the theme toggle: ${String(result.error)}`);
  }
  const { response } = result;
  expect(response.ok(), `the server function ${response.url()} answered ${response.status()}`).toBe(true);
  await response.finished();

  await page.reload();
  await waitForHydration(page);
  if (after === null) {
    await expect(html).not.toHaveAttribute("data-theme");
  } else {
    await expect(html).toHaveAttribute("data-theme", after);
  }
});
