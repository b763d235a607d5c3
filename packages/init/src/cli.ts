#!/usr/bin/env node
console.log("usage: placeholder");
