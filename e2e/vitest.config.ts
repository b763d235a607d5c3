import { defineConfig } from "vitest/config";

const reportDir = process.env.III_TEST_REPORT_DIR;

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 300_000,
    hookTimeout: 60_000,
    pool: "forks",
    reporters: reportDir
      ? ["default", ["json", { outputFile: `${reportDir}/${process.env.npm_package_name?.replace("/", "__") ?? "pkg"}.json` }]]
      : ["default"],
  },
});
