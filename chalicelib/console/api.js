// The console's only way to the ledger: the public v1 API, on the origin that served the console.
// Tokens live in this module's memory only (never localStorage, sessionStorage or a cookie): a
// reload or a closed tab signs the operator out. An access token about to expire, or refused
// with 401, is renewed once with the refresh token; parallel calls share that one renewal
// (presenting a used refresh token would revoke the whole login).

// The API's root, from this file's own address: /console/api.js -> /, and under a deployed
// stage /api/console/api.js -> /api/.
export const API_ROOT = new URL("../", import.meta.url);

// Renew this long before the access token's stated expiry.
const EARLY_RENEWAL_MS = 30_000;

export class ApiError extends Error {
  constructor(status, code, message, requestId, details) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.details = details || [];
  }

  // The API's "safe to retry" answers (API.md, "Idempotency"), and no answer at all.
  get retryable() {
    return (
      this.status === 0 ||
      this.status >= 500 ||
      this.code === "conflict" ||
      this.code === "idempotency_in_progress"
    );
  }
}

export function newIdempotencyKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return "console-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// One operator action that moves money: the same Idempotency-Key for a retry of the same body
// after a "safe to retry" answer, a new key for anything else.
export class Attempt {
  constructor() {
    this.key = null;
    this.body = null;
  }

  keyFor(body) {
    const text = JSON.stringify(body);
    if (this.key === null || text !== this.body) {
      this.key = newIdempotencyKey();
      this.body = text;
    }
    return this.key;
  }

  settle(error) {
    if (!(error instanceof ApiError && error.retryable)) {
      this.key = null;
      this.body = null;
    }
  }
}

export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export function createClient({ root = API_ROOT, fetchImpl, now = () => Date.now() } = {}) {
  const send = fetchImpl || ((url, init) => fetch(url, init));
  let tokens = null; // {access, refresh, expiresAt}
  let renewal = null; // the renewal under way, shared by every caller
  const signedOutListeners = [];

  async function raw(method, path, { body, headers = {}, token } = {}) {
    const init = {
      method,
      headers: { Accept: "application/json", ...headers },
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (token) init.headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await send(new URL(path, root), init);
    } catch (error) {
      throw new ApiError(0, "network_error", `The API did not answer (${error.message}).`, null);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(
        response.status,
        error.code || `http_${response.status}`,
        error.message || `The API answered ${response.status}.`,
        error.request_id || response.headers.get("X-Request-Id"),
        error.details,
      );
    }
    return data || {};
  }

  function keep(pair) {
    tokens = {
      access: pair.access_token,
      refresh: pair.refresh_token,
      expiresAt: now() + pair.expires_in * 1000,
    };
  }

  function forget(reason) {
    tokens = null;
    for (const listener of signedOutListeners) listener(reason);
  }

  function renew() {
    if (renewal === null) {
      const presented = tokens && tokens.refresh;
      renewal = (async () => {
        try {
          keep(await raw("POST", "v1/auth/refresh", { body: { refresh_token: presented } }));
        } catch (error) {
          if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
            forget(error);
          }
          throw error;
        } finally {
          renewal = null;
        }
      })();
    }
    return renewal;
  }

  async function call(method, path, options = {}) {
    if (renewal !== null) await renewal;
    if (tokens === null) {
      throw new ApiError(401, "unauthenticated", "You are signed out: sign in again.", null);
    }
    if (now() >= tokens.expiresAt - EARLY_RENEWAL_MS) await renew();
    const sent = tokens.access;
    try {
      return await raw(method, path, { ...options, token: sent });
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401 || tokens === null) throw error;
      // Refused as expired: renew once (unless another call already did) and ask again. The
      // API refused the first request before doing anything, so asking again is safe.
      if (tokens.access === sent) await renew();
      return raw(method, path, { ...options, token: tokens.access });
    }
  }

  return {
    get signedIn() {
      return tokens !== null;
    },
    async signIn(email, password, totpCode) {
      const body = { email, password };
      if (totpCode) body.totp_code = totpCode;
      keep(await raw("POST", "v1/auth/login", { body }));
    },
    async signOut() {
      const presented = tokens && tokens.refresh;
      tokens = null;
      if (presented) await raw("POST", "v1/auth/logout", { body: { refresh_token: presented } });
    },
    onSignedOut(listener) {
      signedOutListeners.push(listener);
    },
    get: (path, params) => call("GET", withQuery(path, params)),
    post: (path, body = {}, idempotencyKey = null) =>
      call("POST", path, {
        body,
        headers: idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {},
      }),
  };
}
