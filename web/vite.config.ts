/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The dev server proxies the API to a `cellfab serve` on 127.0.0.1:8000 (override with
// CELLFAB_URL); the production bundle is served by `cellfab serve` itself, same origin.
const target = process.env.CELLFAB_URL ?? "http://127.0.0.1:8000";
const proxied = ["/api", "/start-both", "/reset", "/files"];

export default defineConfig({
  plugins: [react()],
  root: import.meta.dirname,
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: {
    proxy: {
      ...Object.fromEntries(proxied.map((p) => [p, { target, ws: p === "/api" }])),
      "/ws": { target, ws: true },
    },
  },
  test: { environment: "jsdom", include: ["src/**/*.test.ts"] },
});
