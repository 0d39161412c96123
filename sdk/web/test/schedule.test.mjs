// Scheduling, single flight, backoff and sign-out of the built bundle, on fake timers: several
// "tabs" (instances) share one fake lock manager and one fake broadcast bus, and a fake authx
// counts the token requests they make.
import { afterEach, beforeEach, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  ASK_MS,
  AuthxError,
  BACKOFF_CAP_MS,
  BACKOFF_MS,
  TRIES,
  createAuthx,
  retryDelay,
} from '../dist/index.js';

const ISSUER = 'https://id.example.com';
const API = { resource: 'https://api.example.com' };
const LIFE_S = 300;
const T0 = 1_700_000_000_000;

/** Lets every promise continuation and message delivery run (setImmediate is not faked). */
const settle = () => new Promise((r) => setImmediate(r));

/** Moves the fake clock forward in small steps, letting async work run between them. */
async function advance(ms, step = 10) {
  for (let t = 0; t < ms; t += step) {
    mock.timers.tick(Math.min(step, ms - t));
    await settle();
  }
}

/**
 * A Web Locks stand-in: one holder per name at a time, FIFO, shared by all tabs; `ifAvailable`
 * gets `null` while the lock is held or asked for. `waited` counts requests that had to queue.
 */
function fakeLocks() {
  const tails = new Map();
  const busy = new Map();
  const locks = {
    waited: 0,
    request(name, options, cb) {
      if (options.ifAvailable && busy.get(name)) return Promise.resolve().then(() => cb(null));
      if (busy.get(name)) locks.waited++;
      busy.set(name, (busy.get(name) ?? 0) + 1);
      const prev = tails.get(name) ?? Promise.resolve();
      const run = prev.then(() => cb({ name }));
      tails.set(
        name,
        run.catch(() => {}).then(() => busy.set(name, busy.get(name) - 1)),
      );
      return run;
    },
  };
  return locks;
}

/** A BroadcastChannel stand-in: delivers asynchronously to every other member. */
function fakeBus() {
  const members = new Set();
  return {
    join() {
      const ch = {
        onmessage: null,
        postMessage(data) {
          const copy = structuredClone(data);
          for (const m of members) {
            if (m !== ch) queueMicrotask(() => m.onmessage?.({ data: copy }));
          }
        },
        close() {
          members.delete(ch);
        },
      };
      members.add(ch);
      return ch;
    },
  };
}

/** A fake authx: answers from `script` (then 200s), counts token requests, checks CSRF. */
function fakeServer({ script = [], lifeS = LIFE_S, delayMs = 0 } = {}) {
  const s = { tokenRequests: [], signedIn: true, issued: 0, csrfFetches: 0, csrf: 'csrf-1', api: [] };
  s.fetch = async (input, init = {}) => {
    const url = String(input);
    const headers = new Headers(init.headers);
    if (url === ISSUER + '/api/v1/auth/csrf') {
      s.csrfFetches++;
      return Response.json({ csrf_token: s.csrf });
    }
    if (url === ISSUER + '/api/v1/auth/token') {
      assert.equal(init.method, 'POST');
      assert.equal(init.credentials, 'include');
      s.tokenRequests.push({ at: Date.now(), body: JSON.parse(init.body) });
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      const scripted = script.shift();
      if (scripted) return scripted();
      if (headers.get('x-csrf-token') !== s.csrf) {
        return Response.json({ error: 'csrf_failed', message: 'bad' }, { status: 403 });
      }
      if (!s.signedIn) return Response.json({ error: 'unauthenticated', message: 'sign in first' }, { status: 401 });
      s.issued++;
      return Response.json({ access_token: 'tok-' + s.issued, token_type: 'Bearer', expires_in: lifeS });
    }
    if (url === ISSUER + '/api/v1/auth/sign-out') {
      assert.equal(headers.get('x-csrf-token'), s.csrf);
      s.signedIn = false;
      return new Response(null, { status: 204 });
    }
    if (url === ISSUER + '/api/v1/me') {
      return s.signedIn
        ? Response.json({ user: { id: 'u1', email: 'a@example.com' }, session: { id: 's1', expires_at: '' } })
        : Response.json({ error: 'unauthenticated' }, { status: 401 });
    }
    // The app's API: accepts only `s.accept` tokens.
    s.api.push(headers.get('authorization'));
    const ok = s.accept?.(headers.get('authorization'));
    return new Response(ok ? 'data' : null, { status: ok ? 200 : 401 });
  };
  return s;
}

function tabs(n, server, locks = fakeLocks(), bus = fakeBus()) {
  return Array.from({ length: n }, () =>
    createAuthx({ issuer: ISSUER + '/', resource: API.resource, fetch: server.fetch, locks, channel: bus.join() }),
  );
}

let random;
beforeEach(() => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
  random = mock.method(Math, 'random', () => 0.5);
});
afterEach(() => {
  mock.timers.reset();
  random.mock.restore();
});

test('retryDelay honours Retry-After in seconds and as a date, else doubles with jitter up to the cap', () => {
  assert.equal(retryDelay('7', 0), 7000);
  assert.equal(retryDelay('0', 3), 0);
  assert.equal(retryDelay(new Date(T0 + 12_000).toUTCString(), 0), 12_000);
  const top = () => 0.999999;
  const bottom = () => 0;
  assert.equal(retryDelay(null, 0, bottom), BACKOFF_MS / 2);
  assert.ok(retryDelay(null, 0, top) <= BACKOFF_MS);
  assert.equal(retryDelay(null, 2, bottom), (BACKOFF_MS * 4) / 2);
  assert.equal(retryDelay(null, 20, bottom), BACKOFF_CAP_MS / 2);
  assert.ok(retryDelay(null, 20, top) <= BACKOFF_CAP_MS);
  assert.equal(retryDelay('garbage', 1, bottom), BACKOFF_MS, 'an unreadable Retry-After falls back');
});

test('one tab: concurrent callers share one request; the refresh fires between 70 and 80 % of the lifetime', async () => {
  const server = fakeServer();
  server.accept = () => true;
  const [a] = tabs(1, server);
  const all = Promise.all([a.getAccessToken(API), a.getAccessToken(API), a.fetch('https://api.example.com/x')]);
  // The first request waited ASK_MS for other tabs, which answered nothing.
  await advance(ASK_MS + 10);
  const got = await all;
  assert.equal(server.tokenRequests.length, 1);
  assert.deepEqual(got.slice(0, 2), ['tok-1', 'tok-1']);
  assert.equal(got[2].status, 200);
  assert.deepEqual(server.api, ['Bearer tok-1']);
  assert.deepEqual(server.tokenRequests[0].body, { resource: API.resource });

  // Math.random() = 0.5: the timer is at 75 % of 300 s after the token came, jitter included;
  // the refresh then waits ASK_MS for other tabs, like the first request.
  const due = T0 + 2 * ASK_MS + LIFE_S * 750;
  await advance(due - Date.now() - 200, 1000);
  await advance(180, 1);
  assert.equal(server.tokenRequests.length, 1, 'no refresh before 75 %');
  await advance(60, 1);
  assert.equal(server.tokenRequests.length, 2, 'refreshed at 75 %');
  // Within the 10 ms steps the first token was obtained in.
  const at = server.tokenRequests[1].at;
  assert.ok(at >= due && at <= due + 10, `refresh at ${at - T0} ms`);
  assert.equal(await a.getAccessToken(API), 'tok-2');
  a.close();
});

test('jitter spreads refresh timers over 70..80 % of the lifetime', async () => {
  for (const [r, share] of [
    [0, 0.7],
    [0.999, 0.7999],
  ]) {
    mock.timers.reset();
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
    random.mock.mockImplementation(() => r);
    const server = fakeServer();
    const [a] = tabs(1, server);
    a.getAccessToken(API);
    await advance(ASK_MS + 10);
    const due = T0 + 2 * ASK_MS + LIFE_S * 1000 * share;
    await advance(due - Date.now() - 200, 1000);
    await advance(180, 1);
    assert.equal(server.tokenRequests.length, 1, `random ${r}: not before ${share}`);
    await advance(40, 1);
    assert.equal(server.tokenRequests.length, 2, `random ${r}: at ${share}`);
    a.close();
  }
});

for (const n of [2, 5]) {
  test(`${n} tabs: one request at start and one per refresh round, every tab holding the new token`, async () => {
    const server = fakeServer();
    const all = tabs(n, server);
    // Every tab wants a token at once; tabs then get different timer jitter.
    let i = 0;
    random.mock.mockImplementation(() => (i++ % n) / n);
    const started = Promise.all(all.map((t) => t.getAccessToken(API)));
    await advance((ASK_MS + 10) * n);
    const first = await started;
    assert.equal(server.tokenRequests.length, 1);
    assert.deepEqual(first, Array(n).fill('tok-1'));

    for (let round = 2; round <= 4; round++) {
      const expiry = Date.now() + LIFE_S * 1000;
      while (server.tokenRequests.length < round && Date.now() < expiry) await advance(500, 500);
      assert.equal(server.tokenRequests.length, round, `round ${round}: a refresh before expiry`);
      // The other tabs' timers (jitter: 10 % of the lifetime) would all have fired by now.
      await advance(LIFE_S * 200, 500);
      assert.equal(server.tokenRequests.length, round, `round ${round}: one request for ${n} tabs`);
      const now = await Promise.all(all.map((t) => t.getAccessToken(API)));
      assert.deepEqual(now, Array(n).fill('tok-' + round));
      assert.equal(server.tokenRequests.length, round);
    }
    all.forEach((t) => t.close());
  });
}

test('a timer firing while another tab refreshes neither queues nor requests; that tab\'s token resets it', async () => {
  // authx takes 40 s to answer: tab A refreshes at 70 % of the token's lifetime; tab B's timer,
  // at 80 %, fires meanwhile.
  const server = fakeServer({ delayMs: 40_000 });
  const locks = fakeLocks();
  const [a, b] = tabs(2, server, locks);
  let i = 0;
  random.mock.mockImplementation(() => (i++ % 2 ? 0.999 : 0));
  const p = a.getAccessToken(API);
  await advance(42_000, 1000);
  assert.equal(await p, 'tok-1');
  // B takes the token A shared (and arms its own timer).
  assert.equal(await b.getAccessToken(API), 'tok-1');
  const waitedBefore = locks.waited;
  await advance(300_000, 500);
  // Exactly one request for the round (A's, at 70 % of tok-1's lifetime), and B never waited
  // behind A's lock.
  assert.equal(server.tokenRequests.length, 2);
  const tok1At = server.tokenRequests[0].at + 40_000;
  assert.ok(server.tokenRequests[1].at - tok1At < LIFE_S * 710);
  assert.equal(locks.waited, waitedBefore);
  assert.equal(await b.getAccessToken(API), 'tok-2');
  a.close();
  b.close();
});

test('a tab opened later takes the token another tab holds', async () => {
  const server = fakeServer();
  const locks = fakeLocks();
  const bus = fakeBus();
  const [a] = tabs(1, server, locks, bus);
  const p = a.getAccessToken(API);
  await advance(ASK_MS + 10);
  assert.equal(await p, 'tok-1');
  await advance(60_000, 1000);
  const [b] = tabs(1, server, locks, bus);
  // On creation it asked the others for their tokens: the first call needs no wait.
  await settle();
  assert.equal(await b.getAccessToken(API), 'tok-1');
  // One that asks for a token before the others answered waits for them, briefly.
  const [c] = tabs(1, server, locks, bus);
  const q = c.getAccessToken(API);
  await advance(ASK_MS + 10);
  assert.equal(await q, 'tok-1');
  assert.equal(server.tokenRequests.length, 1);
  // With the others closed, the tab that was handed its token keeps it fresh on its own.
  a.close();
  c.close();
  await advance(LIFE_S * 1000, 1000);
  assert.equal(server.tokenRequests.length, 2);
  assert.equal(await b.getAccessToken(API), 'tok-2');
  b.close();
});

test('429 with Retry-After is honoured, 5xx backs off exponentially, other errors are not retried', async () => {
  const server = fakeServer({
    script: [
      () => new Response(null, { status: 429, headers: { 'retry-after': '7' } }),
      () => new Response(null, { status: 503 }),
      () => new Response(null, { status: 502 }),
    ],
  });
  const [a] = tabs(1, server);
  const p = a.getAccessToken(API);
  await advance(ASK_MS + 10);
  assert.equal(server.tokenRequests.length, 1);
  await advance(7000 - 20, 10);
  assert.equal(server.tokenRequests.length, 1, 'not before Retry-After');
  await advance(40);
  assert.equal(server.tokenRequests.length, 2, 'right after Retry-After');
  // random = 0.5: the second and third failures wait 0.75 × 1 s and 0.75 × 2 s.
  await advance(800);
  assert.equal(server.tokenRequests.length, 3);
  assert.equal(server.tokenRequests[2].at - server.tokenRequests[1].at, 750);
  await advance(1600);
  assert.equal(server.tokenRequests.length, 4);
  assert.equal(server.tokenRequests[3].at - server.tokenRequests[2].at, 1500);
  assert.equal(await p, 'tok-1');

  const bad = fakeServer({ script: [() => Response.json({ error: 'invalid_target', message: 'unknown resource' }, { status: 400 })] });
  const [b] = tabs(1, bad);
  const q = b.getAccessToken(API).catch((e) => e);
  await advance(ASK_MS + 10);
  const err = await q;
  assert.ok(err instanceof AuthxError);
  assert.equal(err.status, 400);
  assert.equal(err.code, 'invalid_target');
  assert.equal(bad.tokenRequests.length, 1);
  a.close();
  b.close();
});

test('backoff gives up after a bounded number of tries', async () => {
  const server = fakeServer({ script: Array(TRIES).fill(() => new Response(null, { status: 500 })) });
  const [a] = tabs(1, server);
  const p = a.getAccessToken(API).catch((e) => e);
  await advance(120_000, 100);
  const err = await p;
  assert.equal(err.status, 500);
  assert.equal(server.tokenRequests.length, TRIES);
  a.close();
});

test('fetch adds the bearer token and retries once with a fresh token after a 401', async () => {
  const server = fakeServer();
  const [a] = tabs(1, server);
  server.accept = (auth) => auth === 'Bearer tok-2';
  const p = a.fetch('https://api.example.com/data', { headers: { accept: 'text/plain' } });
  await advance(ASK_MS * 2 + 20);
  const r = await p;
  assert.equal(r.status, 200);
  assert.deepEqual(server.api, ['Bearer tok-1', 'Bearer tok-2']);
  assert.equal(server.tokenRequests.length, 2);

  // A second 401 is the API's answer: no loop.
  server.accept = () => false;
  const q = a.fetch('https://api.example.com/data');
  await advance(ASK_MS * 2 + 20);
  assert.equal((await q).status, 401);
  assert.equal(server.api.length, 4);
  assert.equal(server.tokenRequests.length, 3);
  a.close();
});

test('CSRF: every token request carries the header; a 403 refetches the token once', async () => {
  const server = fakeServer();
  const [a] = tabs(1, server);
  let p = a.getAccessToken(API);
  await advance(ASK_MS + 10);
  assert.equal(await p, 'tok-1');
  assert.equal(server.csrfFetches, 1);
  server.csrf = 'csrf-2'; // signed in again: a new session, a new CSRF token
  await advance(LIFE_S * 1000, 1000);
  assert.equal(server.csrfFetches, 2);
  assert.equal(await a.getAccessToken(API), 'tok-2');
  a.close();
});

test('sign-out in one tab signs out every tab and stops their refresh timers', async () => {
  const server = fakeServer();
  const all = tabs(3, server);
  const seen = all.map(() => []);
  all.forEach((t, i) => t.onChange((s) => seen[i].push(s)));
  const ps = all.map((t) => t.getAccessToken(API));
  await advance(ASK_MS * 3 + 30);
  await Promise.all(ps);
  assert.deepEqual(seen, [[true], [true], [true]]);
  await all[1].signOut();
  await settle();
  assert.deepEqual(seen, [[true, false], [true, false], [true, false]]);
  await advance(LIFE_S * 3000, 5000);
  assert.equal(server.tokenRequests.length, 1, 'no refresh after sign-out');
  assert.equal(await all[0].session(), null);
  all.forEach((t) => t.close());
});

test('a refused session (401) signs out every tab and rejects', async () => {
  const server = fakeServer();
  const all = tabs(2, server);
  const seen = [];
  all[1].onChange((s) => seen.push(s));
  const p = all[0].getAccessToken(API);
  await advance(ASK_MS + 10);
  await p;
  server.signedIn = false; // revoked elsewhere
  await advance(LIFE_S * 1000, 1000);
  assert.equal(server.tokenRequests.length, 2);
  assert.deepEqual(seen, [true, false]);
  const q = all[1].getAccessToken(API).catch((e) => e);
  await advance(ASK_MS + 10);
  const err = await q;
  assert.equal(err.status, 401);
  assert.equal(err.code, 'unauthenticated');
  all.forEach((t) => t.close());
});

test('the bundle has no way to persist a token', () => {
  const src = readFileSync(new URL('../dist/index.js', import.meta.url), 'utf8');
  for (const api of ['localStorage', 'sessionStorage', 'indexedDB', 'cookie', 'caches']) {
    assert.ok(!src.includes(api), `dist/index.js mentions ${api}`);
  }
});
