import { defineConfig } from "vitest/config";

const reportDir = process.env.III_TEST_REPORT_DIR;

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // VM tests boot real guests under TCG; run files one at a time so 2 cores are not shared by several VMs.
    fileParallelism: false,
    reporters: reportDir
      ? ["default", ["json", { outputFile: `${reportDir}/${process.env.npm_package_name?.replace("/", "__") ?? "pkg"}.json` }]]
      : ["default"],
  },
});
