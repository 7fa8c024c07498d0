import { test as base, expect, type BrowserContext, type ConsoleMessage, type Page } from "@playwright/test";

export { expect };

/** One `securitypolicyviolation` event, as recorded in the page by the init script below. */
export interface CspViolation {
  directive: string;
  blocked: string;
}

declare global {
  interface Window {
    __cspViolations?: CspViolation[];
  }
}

/** What a test may tell the watcher to let pass: a console error it expects, e.g. the 404 of a page it asked for. */
export interface ConsoleEntry {
  type: string;
  text: string;
  /** The URL the browser attributes the message to (for a failed load: the resource's URL). */
  url: string;
}

// Runs in the page before any of its own scripts (it is serialized, so it must stay self-contained).
function recordCspViolations(): void {
  window.__cspViolations = window.__cspViolations ?? [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__cspViolations?.push({ directive: e.violatedDirective, blocked: e.blockedURI });
  });
}

function mentionsCsp(text: string): boolean {
  return /content[- ]security[- ]policy/i.test(text);
}

/**
 * Collects, for every page of the browser contexts it watches: console errors (and any console
 * message about the Content Security Policy), uncaught page errors, and CSP violation events.
 * The `problems` fixture watches the test's own context and asserts at the end of every test
 * that nothing was collected. A test that opens another context calls `problems.watch(context)`
 * before opening pages in it.
 */
export class BrowserProblems {
  readonly consoleMessages: string[] = [];
  readonly pageErrors: string[] = [];
  private readonly pages: Page[] = [];
  private readonly contexts = new Set<BrowserContext>();
  private readonly allowed: Array<(entry: ConsoleEntry) => boolean> = [];

  async watch(context: BrowserContext): Promise<void> {
    if (this.contexts.has(context)) return;
    this.contexts.add(context);
    await context.addInitScript(recordCspViolations);
    context.on("page", (page) => this.watchPage(page));
    for (const page of context.pages()) this.watchPage(page);
  }

  /** Lets console errors that match `filter` pass (CSP messages are never let pass). */
  allowConsoleError(filter: (entry: ConsoleEntry) => boolean): void {
    this.allowed.push(filter);
  }

  private watchPage(page: Page): void {
    if (this.pages.includes(page)) return;
    this.pages.push(page);
    page.on("console", (message) => this.onConsole(message));
    page.on("pageerror", (error) => {
      this.pageErrors.push(`${page.url()}: ${error.stack ?? `${error.name}: ${error.message}`}`);
    });
  }

  private onConsole(message: ConsoleMessage): void {
    const text = message.text();
    const csp = mentionsCsp(text);
    if (message.type() !== "error" && !csp) return;
    const location = message.location();
    const entry: ConsoleEntry = { type: message.type(), text, url: location.url };
    if (!csp && this.allowed.some((allow) => allow(entry))) return;
    const where = location.url ? ` (at ${location.url}:${location.lineNumber})` : "";
    this.consoleMessages.push(`[${entry.type}] ${text}${where}`);
  }

  /** The CSP violations recorded so far in every open page; closed pages are skipped. */
  async cspViolations(): Promise<string[]> {
    const found: string[] = [];
    for (const page of this.pages) {
      const violations = await readViolations(page);
      for (const v of violations) found.push(`${page.url()}: ${v.directive} blocked ${v.blocked || "(inline)"}`);
    }
    return found;
  }

  async expectNone(): Promise<void> {
    const cspViolations = await this.cspViolations();
    expect(
      { consoleMessages: this.consoleMessages, pageErrors: this.pageErrors, cspViolations },
      "no console error, uncaught page error or Content Security Policy violation in the browser",
    ).toEqual({ consoleMessages: [], pageErrors: [], cspViolations: [] });
  }
}

async function readViolations(page: Page): Promise<CspViolation[]> {
  for (let attempt = 0; ; attempt++) {
    if (page.isClosed()) return [];
    try {
      return await page.evaluate(() => window.__cspViolations ?? []);
    } catch (error) {
      if (page.isClosed()) return [];
      // A navigation the test started may still be under way: wait for it once, then read again.
      const message = error instanceof Error ? error.message : String(error);
      if (attempt === 0 && /context was destroyed|navigat|Target .*closed/i.test(message)) {
        await page.waitForLoadState("load").catch(() => undefined);
        continue;
      }
      throw error;
    }
  }
}

export const test = base.extend<{ problems: BrowserProblems }>({
  problems: [
    async ({ context }, use) => {
      const problems = new BrowserProblems();
      await problems.watch(context);
      await use(problems);
      await problems.expectNone();
    },
    { auto: true },
  ],
});

/** Waits until the WASM bundle has hydrated the page (the app then sets `data-hydrated="true"` on `<html>`). */
export async function waitForHydration(page: Page, timeout = 30_000): Promise<void> {
  await page.locator('html[data-hydrated="true"]').waitFor({ state: "attached", timeout });
}
