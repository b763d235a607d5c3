export const PACKAGE_NAME = "@iii/network";
