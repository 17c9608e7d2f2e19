import { Fragment, useEffect, useState, type ReactNode } from "react";
import { getToken, onUnauthorized, setToken } from "../token";

/**
 * Shows the UI, or — once the server answers 401 — a small form asking for the access
 * token. Entering it stores it and mounts the UI afresh, which retries every request.
 */
export function AccessGate({ children }: { children: ReactNode }) {
  const [needed, setNeeded] = useState(false);
  const [refused, setRefused] = useState(false);
  const [generation, setGeneration] = useState(0);
  const [value, setValue] = useState("");
  useEffect(
    () =>
      onUnauthorized(() => {
        setRefused(getToken() !== null);
        setNeeded(true);
      }),
    [],
  );
  if (!needed) return <Fragment key={generation}>{children}</Fragment>;
  return (
    <main className="fatal access" aria-labelledby="access-h">
      <h1 id="access-h">cellfab</h1>
      <p>This server needs an access token (the one given to <code>cellfab serve --token</code>).</p>
      {refused && <p className="notice notice-error" role="alert">The server refused the stored token.</p>}
      <form
        className="access-form"
        onSubmit={(e) => {
          e.preventDefault();
          if (!value.trim()) return;
          setToken(value);
          setValue("");
          setNeeded(false);
          setGeneration((g) => g + 1);
        }}
      >
        <label>
          Access token{" "}
          <input type="password" name="access-token" autoComplete="current-password" required value={value} onChange={(e) => setValue(e.target.value)} />
        </label>{" "}
        <button type="submit" className="primary">Continue</button>
      </form>
    </main>
  );
}
