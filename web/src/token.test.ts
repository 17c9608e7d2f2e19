import { afterEach, describe, expect, it, vi } from "vitest";
import { api, downloads, wsUrl } from "./api";
import { authHeaders, getToken, initToken, onUnauthorized, setToken, TOKEN_KEY, withToken, type TokenWindow } from "./token";

function fakeWindow(href: string, stored?: string): TokenWindow & { replaced: string[] } {
  const items = new Map<string, string>(stored ? [[TOKEN_KEY, stored]] : []);
  const replaced: string[] = [];
  return {
    location: { href },
    history: { state: null, replaceState: (_s: unknown, _u: string, url: string) => void replaced.push(url) },
    localStorage: {
      getItem: (k: string) => items.get(k) ?? null,
      setItem: (k: string, v: string) => void items.set(k, v),
      removeItem: (k: string) => void items.delete(k),
      clear: () => items.clear(),
      key: () => null,
      length: items.size,
    } as Storage,
    replaced,
  };
}

afterEach(() => {
  setToken("");
  vi.unstubAllGlobals();
});

describe("access token", () => {
  it("takes ?token= from the page URL, stores it and removes it from the address bar", () => {
    const win = fakeWindow("http://h:8000/?api=http%3A%2F%2Fx&token=s%20e%2Bcret#log");
    expect(initToken(win)).toBe("s e+cret");
    expect(win.replaced).toEqual(["/?api=http%3A%2F%2Fx#log"]);
    expect(win.localStorage!.getItem(TOKEN_KEY)).toBe("s e+cret");
  });

  it("falls back to the stored token, and to none", () => {
    expect(initToken(fakeWindow("http://h/", "kept"))).toBe("kept");
    expect(initToken(fakeWindow("http://h/"))).toBe(null);
    expect(authHeaders()).toEqual({});
  });

  it("puts the token on fetch as a bearer header, on links and sockets as ?token=", async () => {
    setToken("t/1&2");
    expect(getToken()).toBe("t/1&2");
    expect(authHeaders()).toEqual({ Authorization: "Bearer t/1&2" });
    expect(withToken("/files/all")).toBe("/files/all?token=t%2F1%262");
    expect(downloads.run("r1", "anode")).toBe("/api/v1/runs/r1/download?scope=anode&token=t%2F1%262");
    expect(wsUrl("/ws/status")).toMatch(/^ws:\/\/.*\/ws\/status\?token=t%2F1%262$/);
    const seen: Array<[string, RequestInit | undefined]> = [];
    vi.stubGlobal("fetch", async (url: string, init?: RequestInit) => {
      seen.push([url, init]);
      return new Response(JSON.stringify({ runs: [] }), { status: 200 });
    });
    await api.runs();
    await api.validate({});
    expect(seen.map(([, init]) => (init?.headers as Record<string, string>).Authorization)).toEqual(["Bearer t/1&2", "Bearer t/1&2"]);
    expect((seen[1][1]?.headers as Record<string, string>)["Content-Type"]).toBe("application/json");
  });

  it("sends no token and adds none to URLs when there is none", () => {
    expect(withToken("/files/all")).toBe("/files/all");
    expect(downloads.latest("all")).toBe("/files/all");
  });

  it("reports a 401 to the listeners (the access form) and still throws the error", async () => {
    let calls = 0;
    const off = onUnauthorized(() => (calls += 1));
    vi.stubGlobal("fetch", async () =>
      new Response(JSON.stringify({ error: { code: "unauthorized", message: "needs the token" } }), { status: 401 }),
    );
    await expect(api.runs()).rejects.toMatchObject({ status: 401, code: "unauthorized" });
    expect(calls).toBe(1);
    off();
    await expect(api.runs()).rejects.toBeTruthy();
    expect(calls).toBe(1);
  });
});
