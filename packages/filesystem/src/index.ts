export const PACKAGE_NAME = "@iii/filesystem";
