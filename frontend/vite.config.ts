/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// Built into ../static/hub (served by Django under /static/hub/); the /hub/ shell reads the manifest.
export default defineConfig({
  plugins: [react()],
  base: "/static/hub/",
  build: {
    outDir: "../static/hub",
    emptyOutDir: true,
    manifest: true,
    sourcemap: false,
  },
  test: {
    environment: "jsdom",
    setupFiles: ["./src/test/setup.ts"],
    css: false,
    testTimeout: 30_000, // a machine shared with other suites can be slow; each test still waits only for what it asserts
  },
});
