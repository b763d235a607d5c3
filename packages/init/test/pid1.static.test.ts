// test/pid1.test.ts again, with the static init (dist/init-static) as PID 1 in
// a rootfs of busybox and that one file. Skipped when it was not built
// (`pnpm build:static`).
process.env.III_INIT_TEST_MODE = "static";
await import("./pid1.test.js");
