import { defineConfig } from "vitest/config";

const reportDir = process.env.III_TEST_REPORT_DIR;

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Two cores shared with other engineers: at most two FUSE servers at once.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: reportDir
      ? ["default", ["json", { outputFile: `${reportDir}/${process.env.npm_package_name?.replace("/", "__") ?? "pkg"}.json` }]]
      : ["default"],
  },
});
