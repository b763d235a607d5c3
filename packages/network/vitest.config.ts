import { defineConfig } from "vitest/config";

const reportDir = process.env.III_TEST_REPORT_DIR;

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // The namespace tests move gigabytes through one Node process each; running them one file at
    // a time keeps the machine (2 shared cores) responsive and the timings meaningful.
    fileParallelism: false,
    reporters: reportDir
      ? ["default", ["json", { outputFile: `${reportDir}/${process.env.npm_package_name?.replace("/", "__") ?? "pkg"}.json` }]]
      : ["default"],
  },
});
