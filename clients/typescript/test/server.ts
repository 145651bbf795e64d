// What the test files share: the server under test, which tests/scripts/typescript_client.sh
// starts and names in WARMPOOL_URL and WARMPOOL_TOKEN, a client of it, and two assertions.
import assert from "node:assert/strict";

import { Client } from "warmpool";

const urlEnv = process.env.WARMPOOL_URL;
const tokenEnv = process.env.WARMPOOL_TOKEN;
if (!urlEnv || !tokenEnv) throw new Error("WARMPOOL_URL and WARMPOOL_TOKEN must name the server under test");
export const url: string = urlEnv;
export const token: string = tokenEnv;

export const client = new Client({ url, token, timeoutMs: 60_000 });

/** Asserts `p` rejects with an instance of `cls`; returns the error for further checks. */
export async function rejection<E extends Error>(p: Promise<unknown>, cls: new (...a: never[]) => E): Promise<E> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    return e;
  }
  assert.fail(`expected ${cls.name}, but the call succeeded`);
}

/** Polls `cond` every `stepMs` until it holds; fails the test after `ms`. */
export async function waitFor(what: string, cond: () => Promise<boolean>, ms = 20_000, stepMs = 50): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
