/**
 * authx for single-page apps: the browser keeps only authx's HttpOnly session cookie; this module
 * asks `POST /api/v1/auth/token` for short-lived access tokens, keeps them in memory (never in
 * localStorage, sessionStorage, IndexedDB or a cookie) and refreshes them ahead of expiry, once
 * for all tabs of the origin (Web Locks + BroadcastChannel).
 */

/** Which API a token is for: its resource (the token's `aud`) and, optionally, fewer scopes. */
export interface TokenRequest {
  resource: string;
  scope?: string;
}

/** The part of the Web Locks API this module uses (`navigator.locks`). */
export interface Locks {
  request<T>(
    name: string,
    options: { ifAvailable?: boolean },
    callback: (lock: unknown) => Promise<T>,
  ): Promise<T>;
}

/** The part of `BroadcastChannel` this module uses. */
export interface Channel {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent) => void) | null;
  close(): void;
}

export interface AuthxOptions {
  /** authx's public URL (its issuer), e.g. `https://id.example.com`. */
  issuer: string;
  /** The API `fetch()` gets tokens for when its `init` names none. */
  resource?: string;
  /** The scopes `fetch()` asks for when its `init` names none (default: all the API offers). */
  scope?: string;
  /** Replaces the global `fetch` (tests, non-browser environments). */
  fetch?: typeof fetch;
  /** Replaces `navigator.locks`; `null` coordinates within this page only. */
  locks?: Locks | null;
  /** Replaces the `BroadcastChannel` to other tabs; `null` shares nothing with them. */
  channel?: Channel | null;
}

/** The signed-in user and session, as `GET /api/v1/me` describes them. */
export interface Session {
  user: { id: string; email: string; [field: string]: unknown };
  session: { id: string; expires_at: string; [field: string]: unknown };
}

/** `init` of {@link Authx.fetch}: a `RequestInit` that may name the API. */
export type AuthxRequestInit = RequestInit & Partial<TokenRequest>;

export interface Authx {
  /** A valid access token for the API: from memory, another tab, or authx. */
  getAccessToken(request: TokenRequest): Promise<string>;
  /**
   * `fetch` with `Authorization: Bearer <token>`; after a 401 it asks for a fresh token and
   * retries once, so the body must be one that can be sent twice (not a stream).
   */
  fetch(input: RequestInfo | URL, init?: AuthxRequestInit): Promise<Response>;
  /** The signed-in user and session, or `null` when signed out. */
  session(): Promise<Session | null>;
  /** Signs out at authx and in every tab. */
  signOut(): Promise<void>;
  /** Calls `listener(signedIn)` when this page learns it is signed in or out; returns an unsubscribe. */
  onChange(listener: (signedIn: boolean) => void): () => void;
  /** Stops timers and leaves the tab channel. */
  close(): void;
}

/** An answer from authx that was not a success. */
export class AuthxError extends Error {
  constructor(
    /** HTTP status, or 0 when authx could not be reached. */
    readonly status: number,
    /** authx's error code (`unauthenticated`, `invalid_target`, ...). */
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'AuthxError';
  }
}

/** Refresh timers fire between 70 % and 80 % of a token's lifetime (the jitter spreads tabs). */
export const REFRESH_AT = 0.7;
export const REFRESH_JITTER = 0.1;
/** A token past 60 % of its lifetime is refreshed rather than used when one is asked for. */
export const STALE_AT = 0.6;
/** How long a tab waits for another tab to hand over a token before asking authx. */
export const ASK_MS = 50;
/** Backoff on 429, 5xx and network failures: 0.5 s doubling up to 30 s, six tries in all. */
export const BACKOFF_MS = 500;
export const BACKOFF_CAP_MS = 30_000;
export const TRIES = 6;

interface Entry {
  /** The token. */
  t: string;
  /** Expiry and lifetime, in ms (epoch time, comparable across tabs). */
  exp: number;
  life: number;
  timer?: ReturnType<typeof setTimeout>;
}

type Message =
  | { t: 'token'; k: string; v: string; exp: number; life: number }
  | { t: 'ask'; k?: string }
  | { t: 'out' };

interface TokenJson {
  access_token: string;
  expires_in: number;
}

/** Milliseconds to wait before retry `n` (0-based): `Retry-After` when given, else jittered doubling. */
export function retryDelay(retryAfter: string | null, n: number, random = Math.random): number {
  if (retryAfter) {
    const s = Number(retryAfter);
    const ms = retryAfter.trim() && !isNaN(s) ? s * 1000 : Date.parse(retryAfter) - Date.now();
    if (ms >= 0) return ms;
  }
  return Math.min(BACKOFF_CAP_MS, BACKOFF_MS * 2 ** n) * (0.5 + random() / 2);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function createAuthx(options: AuthxOptions): Authx {
  const issuer = options.issuer.replace(/\/+$/, '');
  const http = options.fetch ?? ((input, init) => fetch(input, init));
  const locks: Locks | null =
    options.locks !== undefined
      ? options.locks
      : ((globalThis.navigator as { locks?: Locks } | undefined)?.locks ?? null);
  const channel: Channel | null =
    options.channel !== undefined
      ? options.channel
      : typeof BroadcastChannel == 'function'
        ? new BroadcastChannel('authx:' + issuer)
        : null;

  const cache = new Map<string, Entry>();
  /** The APIs this page uses: their tokens are kept fresh. */
  const active = new Map<string, TokenRequest>();
  const inflight = new Map<string, Promise<string>>();
  /** Wakes a tab waiting for another tab's answer to `ask`. */
  const wake = new Map<string, () => void>();
  const listeners = new Set<(signedIn: boolean) => void>();
  let csrf: Promise<string> | undefined;
  let signedIn: boolean | undefined;

  const keyOf = (r: TokenRequest) => r.resource + ' ' + (r.scope ?? '');
  const fresh = (e: Entry | undefined, reject?: string): e is Entry =>
    !!e && e.t !== reject && Date.now() < e.exp - e.life * (1 - STALE_AT);
  const post = (m: Message) => channel?.postMessage(m);

  const setState = (s: boolean) => {
    if (s !== signedIn) {
      signedIn = s;
      listeners.forEach((l) => l(s));
    }
  };

  /** Sets the refresh timer of a token this page uses, at 70-80 % of its lifetime. */
  const arm = (k: string, e: Entry) => {
    const req = active.get(k);
    if (req && !e.timer) {
      const at = e.exp - e.life * (1 - REFRESH_AT - REFRESH_JITTER * Math.random());
      e.timer = setTimeout(() => refresh(k, req), Math.max(0, at - Date.now()));
    }
  };

  const put = (k: string, t: string, exp: number, life: number, send: boolean) => {
    const old = cache.get(k);
    if (old && old.exp >= exp) return;
    clearTimeout(old?.timer);
    const e: Entry = { t, exp, life };
    cache.set(k, e);
    arm(k, e);
    if (send) post({ t: 'token', k, v: t, exp, life });
    wake.get(k)?.();
    setState(true);
  };

  const signedOut = (send: boolean) => {
    cache.forEach((e) => clearTimeout(e.timer));
    cache.clear();
    active.clear();
    csrf = undefined;
    if (send) post({ t: 'out' });
    setState(false);
  };

  if (channel) {
    channel.onmessage = ({ data }) => {
      const m = data as Message;
      if (m.t == 'token') put(m.k, m.v, m.exp, m.life, false);
      else if (m.t == 'ask') {
        cache.forEach((e, k) => {
          if ((!m.k || m.k == k) && fresh(e)) post({ t: 'token', k, v: e.t, exp: e.exp, life: e.life });
        });
      } else if (m.t == 'out') signedOut(false);
    };
    // A new tab asks for every token the others hold, so its first request usually finds one.
    post({ t: 'ask' });
  }

  const fail = async (r: Response) => {
    const j = await r.json().catch(() => ({}));
    return new AuthxError(r.status, j.error ?? 'http_' + r.status, j.message ?? r.statusText);
  };

  const csrfToken = () =>
    (csrf ??= http(issuer + '/api/v1/auth/csrf', { credentials: 'include' })
      .then(async (r) => {
        if (!r.ok) throw await fail(r);
        return (await r.json()).csrf_token as string;
      })
      .catch((e) => {
        csrf = undefined;
        throw e;
      }));

  /** A state-changing call authenticated by the session cookie, with the CSRF header. */
  const call = async (path: string, body?: unknown, again = false): Promise<Response> => {
    const headers: Record<string, string> = { 'x-csrf-token': await csrfToken() };
    if (body) headers['content-type'] = 'application/json';
    const r = await http(issuer + path, {
      method: 'POST',
      credentials: 'include',
      headers,
      body: body ? JSON.stringify(body) : null,
    });
    if (r.status == 403 && !again) {
      // The session changed since the CSRF token was fetched: fetch it again, once.
      csrf = undefined;
      return call(path, body, true);
    }
    return r;
  };

  const mint = async (req: TokenRequest): Promise<TokenJson> => {
    for (let n = 0; ; n++) {
      let r: Response | undefined;
      try {
        r = await call('/api/v1/auth/token', { resource: req.resource, scope: req.scope });
      } catch (e) {
        // Network failures and a 429/5xx from the CSRF endpoint are retried like the token call.
        if (n + 1 >= TRIES || (e instanceof AuthxError && e.status != 429 && e.status < 500)) throw e;
      }
      if (r) {
        if (r.ok) return r.json();
        if (r.status == 401) {
          signedOut(true);
          throw await fail(r);
        }
        if ((r.status != 429 && r.status < 500) || n + 1 >= TRIES) throw await fail(r);
      }
      await sleep(retryDelay(r?.headers.get('retry-after') ?? null, n));
    }
  };

  /** Runs under the cross-tab lock of `k`: another tab's token, else one request to authx. */
  const obtain = async (k: string, req: TokenRequest, reject?: string) => {
    if (!fresh(cache.get(k), reject) && !reject && channel) {
      await new Promise<void>((r) => {
        wake.set(k, r);
        post({ t: 'ask', k });
        setTimeout(r, ASK_MS);
      });
      wake.delete(k);
    }
    const e = cache.get(k);
    if (fresh(e, reject)) return e.t;
    const j = await mint(req);
    const life = j.expires_in * 1000;
    put(k, j.access_token, Date.now() + life, life, true);
    return j.access_token;
  };

  const lockName = (k: string) => 'authx:' + issuer + ':' + k;

  /**
   * A refresh timer fired. When another tab holds the lock it is refreshing this very token, and
   * the token it shares resets this tab's timer: this tab does not queue a request behind it,
   * but looks again in 1-2 s in case that refresh fails.
   */
  const refresh = (k: string, req: TokenRequest) => {
    if (!locks || inflight.has(k)) {
      get(req).catch(() => {});
      return;
    }
    locks
      .request(lockName(k), { ifAvailable: true }, async (lock) => {
        if (!lock) {
          const e = cache.get(k);
          if (e && active.has(k)) e.timer = setTimeout(() => refresh(k, req), 1000 + 1000 * Math.random());
        } else if (!inflight.has(k)) {
          const p = obtain(k, req);
          inflight.set(k, p);
          await p.finally(() => inflight.delete(k));
        }
      })
      .catch(() => {});
  };

  const get = (req: TokenRequest, reject?: string): Promise<string> => {
    const k = keyOf(req);
    active.set(k, req);
    const e = cache.get(k);
    // A token another tab shared before this one asked for it has no timer yet.
    if (e) arm(k, e);
    if (fresh(e, reject)) return Promise.resolve(e.t);
    let p = inflight.get(k);
    if (!p) {
      const run = () => obtain(k, req, reject);
      p = (locks ? locks.request(lockName(k), {}, run) : run()).finally(() =>
        inflight.delete(k),
      );
      inflight.set(k, p);
    }
    return p;
  };

  return {
    getAccessToken: (req) => get(req),

    async fetch(input, init = {}) {
      const { resource = options.resource, scope = options.scope, ...rest } = init;
      if (!resource) throw new TypeError('authx.fetch: no resource given');
      const req = { resource, scope };
      const send = (t: string) => {
        const headers = new Headers(rest.headers ?? (input instanceof Request ? input.headers : undefined));
        headers.set('authorization', 'Bearer ' + t);
        return http(input, { ...rest, headers });
      };
      const t = await get(req);
      const r = await send(t);
      return r.status == 401 ? send(await get(req, t)) : r;
    },

    async session() {
      const r = await http(issuer + '/api/v1/me', { credentials: 'include' });
      if (r.status == 401) {
        if (signedIn) signedOut(true);
        else setState(false);
        return null;
      }
      if (!r.ok) throw await fail(r);
      setState(true);
      return r.json();
    },

    async signOut() {
      const r = await call('/api/v1/auth/sign-out');
      if (!r.ok && r.status != 401) throw await fail(r);
      signedOut(true);
    },

    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    close() {
      cache.forEach((e) => clearTimeout(e.timer));
      channel?.close();
    },
  };
}
