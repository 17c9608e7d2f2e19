// The access token of a `cellfab serve --token` server, in one place. It comes from
// `?token=` in the page's URL (then taken out of the address bar, so it is not bookmarked or
// shared by accident) or from localStorage, where the access form puts it. fetch sends it as
// `Authorization: Bearer`; WebSocket URLs and download links, which cannot carry a header,
// get `?token=`. A 401 from the server is reported to the listeners (the access form).

/** localStorage key of the token. */
export const TOKEN_KEY = "cellfab.token";

let current: string | null = null;
const listeners = new Set<() => void>();

/** The parts of `window` the token needs (a fake one in tests). */
export interface TokenWindow {
  location: { href: string };
  history: { state: unknown; replaceState(state: unknown, unused: string, url: string): void };
  localStorage?: Storage;
}

function storage(win?: TokenWindow): Storage | undefined {
  try {
    return win ? win.localStorage : globalThis.localStorage;
  } catch {
    return undefined; // storage disabled: the token lives as long as the page
  }
}

/** Reads the token from the page URL (and removes it there) or from localStorage. */
export function initToken(win: TokenWindow = globalThis as unknown as TokenWindow): string | null {
  const url = new URL(win.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    url.searchParams.delete("token");
    win.history.replaceState(win.history.state, "", url.pathname + url.search + url.hash);
    setToken(fromUrl, win);
  } else {
    current = storage(win)?.getItem(TOKEN_KEY) || null;
  }
  return current;
}

/** The token in use, if any. */
export function getToken(): string | null {
  return current;
}

/** Uses and remembers `token` (empty = forget it). */
export function setToken(token: string, win?: TokenWindow): void {
  current = token.trim() || null;
  try {
    if (current) storage(win)?.setItem(TOKEN_KEY, current);
    else storage(win)?.removeItem(TOKEN_KEY);
  } catch {
    /* storage full or disabled: keep it for this page only */
  }
}

/** Headers for fetch: `Authorization: Bearer <token>` when there is a token. */
export function authHeaders(): Record<string, string> {
  return current ? { Authorization: `Bearer ${current}` } : {};
}

/** `url` with `token=<token>` added to its query when there is a token. */
export function withToken(url: string): string {
  if (!current) return url;
  const hash = url.indexOf("#");
  const [head, tail] = hash < 0 ? [url, ""] : [url.slice(0, hash), url.slice(hash)];
  return `${head}${head.includes("?") ? "&" : "?"}token=${encodeURIComponent(current)}${tail}`;
}

/** Calls `listener` on every 401; returns the function that unsubscribes it. */
export function onUnauthorized(listener: () => void): () => void {
  listeners.add(listener);
  return () => {
    listeners.delete(listener);
  };
}

/** Tells the listeners that the server asked for a (valid) token. */
export function reportUnauthorized(): void {
  for (const l of [...listeners]) l();
}
