// test/limits.test.ts again, with the static init (dist/init-static) as PID 1.
// Skipped when it was not built (`pnpm build:static`).
process.env.III_INIT_TEST_MODE = "static";
await import("./limits.test.js");
