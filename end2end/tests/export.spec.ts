import JSZip from "jszip";
import fs from "node:fs/promises";
import { expect, test, waitForHydration } from "./fixtures";
import { confirmEmail, expectSignedIn, register, signInWithPassword } from "./journeys";

// The data export: one click on the privacy page downloads a ZIP of everything about the account, with
// a README, one JSON file per kind of data, and no secrets.

test.describe("data export", () => {
  test("downloads a ZIP with the person's data and no secrets", async ({ page }) => {
    const started = Date.now();
    const account = await register(page, "export");
    await confirmEmail(page, account, started);
    await signInWithPassword(page, account);
    await expectSignedIn(page, account.displayName);

    await page.goto("/settings/privacy");
    await waitForHydration(page);
    const downloaded = page.waitForEvent("download");
    // A plain form post (the browser saves the answer): no need to wait for the WASM.
    await page.getByRole("button", { name: "Download my data (ZIP)" }).click();
    const download = await downloaded;
    expect(download.suggestedFilename()).toMatch(/^nestegg-export-\d{4}-\d{2}-\d{2}\.zip$/);
    const file = await download.path();
    const zip = await JSZip.loadAsync(await fs.readFile(file));

    expect(Object.keys(zip.files).sort()).toEqual([
      "README.txt",
      "consents.json",
      "emails.json",
      "household.json",
      "profile.json",
      "security_events.json",
      "sessions.json",
    ]);
    const text = async (name: string): Promise<string> => {
      const entry = zip.file(name);
      expect(entry, name).not.toBeNull();
      return entry!.async("string");
    };
    const profile = JSON.parse(await text("profile.json"));
    expect(profile.email).toBe(account.email);
    expect(profile.display_name).toBe(account.displayName);
    expect(profile.two_factor.enabled).toBe(false);

    const household = JSON.parse(await text("household.json"));
    expect(household.your_role).toBe("owner");
    expect(household.members.map((m: { email: string }) => m.email)).toEqual([account.email]);

    const events = JSON.parse(await text("security_events.json"));
    const kinds = events.map((e: { kind: string }) => e.kind);
    expect(kinds).toEqual(expect.arrayContaining(["register", "email_verified", "sign_in", "data_exported"]));

    const readme = await text("README.txt");
    for (const name of Object.keys(zip.files).filter((n) => n !== "README.txt")) {
      expect(readme).toContain(name);
    }

    // No secret anywhere: not the password, nor any link token from the emails.
    let everything = "";
    for (const name of Object.keys(zip.files)) everything += await text(name);
    expect(everything).not.toContain(account.password);
    expect(everything).not.toContain("token=");
    expect(everything).not.toContain("$argon2");

    // The download is in the security activity.
    await page.goto("/settings/activity");
    await waitForHydration(page);
    await expect(page.locator(".activity-list .activity-what").first()).toHaveText("Downloaded a copy of your data");
  });
});
