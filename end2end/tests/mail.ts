import fs from "node:fs/promises";
import path from "node:path";
import { simpleParser, type AddressObject } from "mailparser";

/** One email the test SMTP server received (see fixtures/smtp.ts), parsed. */
export interface ReceivedEmail {
  /** The addresses of the To header, lower-cased. */
  to: string[];
  subject: string;
  text: string;
  html: string;
  /** When the test SMTP server received it (ms since the epoch). */
  receivedAt: number;
  /** The raw `.eml` file, to look at when a test fails. */
  file: string;
}

export interface WaitForEmailOptions {
  /** Only a message whose subject contains this. */
  subjectIncludes?: string;
  /** Only a message received at or after this time (ms since the epoch, e.g. `Date.now()` before the action). */
  after?: number;
  /** How long to wait; 15 s by default. */
  timeoutMs?: number;
}

const PORT = process.env.E2E_PORT ?? "3100";
const ORIGIN = `http://127.0.0.1:${PORT}`;
const POLL_MS = 100;

function mailDir(): string {
  const dir = process.env.NESTEGG_E2E_MAIL_DIR;
  if (dir === undefined || dir === "") {
    throw new Error("end2end: NESTEGG_E2E_MAIL_DIR is not set (playwright.config.ts sets it for the run)");
  }
  return dir;
}

// Each file is parsed once; messages never change once written (the server renames them into place).
const parsed = new Map<string, Promise<ReceivedEmail>>();

function addresses(field: AddressObject | AddressObject[] | undefined): string[] {
  const objects = field === undefined ? [] : Array.isArray(field) ? field : [field];
  return objects.flatMap((o) => o.value).flatMap((a) => (a.address ? [a.address.toLowerCase()] : []));
}

async function parse(file: string): Promise<ReceivedEmail> {
  const mail = await simpleParser(await fs.readFile(file));
  return {
    to: addresses(mail.to),
    subject: mail.subject ?? "",
    text: mail.text ?? "",
    html: typeof mail.html === "string" ? mail.html : "",
    receivedAt: Number(path.basename(file).split("-")[0]),
    file,
  };
}

/** Every email received so far, newest first. */
export async function allEmails(): Promise<ReceivedEmail[]> {
  const dir = mailDir();
  const names = (await fs.readdir(dir)).filter((name) => name.endsWith(".eml"));
  const mails = await Promise.all(
    names.map((name) => {
      const file = path.join(dir, name);
      let mail = parsed.get(file);
      if (mail === undefined) {
        mail = parse(file);
        parsed.set(file, mail);
      }
      return mail;
    }),
  );
  return mails.sort((a, b) => b.receivedAt - a.receivedAt || b.file.localeCompare(a.file));
}

/**
 * Waits until the test SMTP server has received an email to `to` (matching `opts`) and returns the
 * newest such email. Fails after `timeoutMs`, listing what did arrive for that address.
 */
export async function waitForEmail(to: string, opts: WaitForEmailOptions = {}): Promise<ReceivedEmail> {
  const address = to.toLowerCase();
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  const matches = (mail: ReceivedEmail) =>
    mail.to.includes(address) &&
    (opts.subjectIncludes === undefined || mail.subject.includes(opts.subjectIncludes)) &&
    (opts.after === undefined || mail.receivedAt >= opts.after);
  for (;;) {
    const mails = await allEmails();
    const found = mails.find(matches);
    if (found !== undefined) return found;
    if (Date.now() >= deadline) {
      const forAddress = mails.filter((m) => m.to.includes(address));
      const seen = forAddress.map((m) => `"${m.subject}" at ${new Date(m.receivedAt).toISOString()}`);
      const wanted = [
        opts.subjectIncludes === undefined ? "" : ` with a subject containing "${opts.subjectIncludes}"`,
        opts.after === undefined ? "" : ` received after ${new Date(opts.after).toISOString()}`,
      ].join("");
      throw new Error(
        `no email to ${to}${wanted} within ${opts.timeoutMs ?? 15_000} ms; ` +
          `received for that address: ${seen.length > 0 ? seen.join(", ") : "nothing"} ` +
          `(${mails.length} emails in ${mailDir()})`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** The first link in the plain-text part that starts with `http://127.0.0.1:<E2E_PORT><pathPrefix>`. */
export function linkFrom(mail: ReceivedEmail, pathPrefix: string): string {
  const prefix = `${ORIGIN}${pathPrefix}`;
  const links = mail.text.match(/https?:\/\/[^\s<>"'()]+/g) ?? [];
  const link = links.find((l) => l.startsWith(prefix));
  if (link === undefined) {
    throw new Error(
      `no link starting with ${prefix} in the email "${mail.subject}" (${mail.file}); ` +
        `its links: ${links.length > 0 ? links.join(", ") : "none"}`,
    );
  }
  return link;
}
