#!/usr/bin/env node
// The `tabgrid` command runs the TypeScript sources directly through tsx.
import { register } from "tsx/esm/api";

register();
await import("../cli/main.ts");
