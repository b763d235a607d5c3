export const PACKAGE_NAME = "@iii/init";
