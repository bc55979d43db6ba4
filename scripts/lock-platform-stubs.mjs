// The npm registry reachable from this workplace mirrors only part of the platform packages of
// @biomejs/biome and @foundry-rs/anvil, so `npm install` cannot record them in package-lock.json, and
// `npm ci` then refuses the lock ("Missing: ... from lock file"). This script adds lock entries for the
// missing off-platform packages (version, os, cpu, libc, optional, no tarball): `npm ci` skips them on
// their os/cpu mismatch and never fetches them. Run it after `npm install` changes the lock:
//   node scripts/lock-platform-stubs.mjs
import { readFileSync, writeFileSync } from 'node:fs'

const lockPath = new URL('../package-lock.json', import.meta.url)
const lock = JSON.parse(readFileSync(lockPath, 'utf8'))
const pkgs = lock.packages
const platforms = {
  '@biomejs/cli-android-arm64': { os: ['android'], cpu: ['arm64'] },
  '@biomejs/cli-android-x64': { os: ['android'], cpu: ['x64'] },
  '@biomejs/cli-darwin-arm64': { os: ['darwin'], cpu: ['arm64'] },
  '@biomejs/cli-darwin-x64': { os: ['darwin'], cpu: ['x64'] },
  '@biomejs/cli-linux-arm64': { os: ['linux'], cpu: ['arm64'], libc: ['glibc'] },
  '@biomejs/cli-linux-arm64-musl': { os: ['linux'], cpu: ['arm64'], libc: ['musl'] },
  '@biomejs/cli-linux-x64-musl': { os: ['linux'], cpu: ['x64'], libc: ['musl'] },
  '@biomejs/cli-win32-arm64': { os: ['win32'], cpu: ['arm64'] },
  '@biomejs/cli-win32-x64': { os: ['win32'], cpu: ['x64'] },
  '@foundry-rs/anvil-darwin-amd64': { os: ['darwin'], cpu: ['x64'] },
  '@foundry-rs/anvil-darwin-arm64': { os: ['darwin'], cpu: ['arm64'] },
  '@foundry-rs/anvil-linux-arm64': { os: ['linux'], cpu: ['arm64'] },
  '@foundry-rs/anvil-win32-amd64': { os: ['win32'], cpu: ['x64'] },
}
let added = 0
for (const [path, entry] of Object.entries(pkgs)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const key = `node_modules/${name}`
    if (pkgs[key] !== undefined) continue
    const plat = platforms[name]
    if (plat === undefined) {
      console.error(
        `no platform known for ${name} (optional dependency of ${path || 'the root'}); add it here`,
      )
      process.exitCode = 1
      continue
    }
    pkgs[key] = { version, dev: entry.dev ?? undefined, optional: true, ...plat }
    added++
  }
}
const sorted = Object.fromEntries(
  Object.entries(pkgs).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : 1)),
)
lock.packages = sorted
writeFileSync(lockPath, JSON.stringify(lock, null, 2) + '\n')
console.log(`added ${added} platform stub entries`)
