import { execFile } from 'node:child_process'
import { access, constants } from 'node:fs/promises'
import { promisify } from 'node:util'
import { type Browser, chromium } from 'playwright-core'

/** Debian's chromium, what the browser tests drive (playwright-core brings no browser of its own). */
export const CHROMIUM = '/usr/bin/chromium'

const run = promisify(execFile)

async function exists(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  )
}

/**
 * The chromium to drive: `/usr/bin/chromium`, installed with `apt-get install -y chromium` first when it
 * is missing and we are root. Answers `{missing}` (why the browser tests skip) when it cannot be had.
 */
export async function ensureChromium(): Promise<{ path: string } | { missing: string }> {
  if (await exists(CHROMIUM)) return { path: CHROMIUM }
  if (process.getuid?.() !== 0)
    return {
      missing: `${CHROMIUM} is missing and we are not root (install it with: apt-get install chromium)`,
    }
  if (!(await exists('/usr/bin/apt-get')))
    return { missing: `${CHROMIUM} is missing and there is no apt-get` }
  process.stderr.write(`browser tests: ${CHROMIUM} missing, running apt-get install -y chromium ...\n`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const install = () => run('apt-get', ['install', '-y', '-q', 'chromium'], { env, maxBuffer: 64 << 20 })
  try {
    await install().catch(async () => {
      // A fresh container has no package lists yet.
      await run('apt-get', ['update', '-q'], { env, maxBuffer: 64 << 20 })
      await install()
    })
  } catch (err) {
    return {
      missing: `${CHROMIUM} is missing and apt-get install chromium failed: ${(err as Error).message}`,
    }
  }
  process.stderr.write('browser tests: chromium installed\n')
  return (await exists(CHROMIUM))
    ? { path: CHROMIUM }
    : { missing: `${CHROMIUM} still missing after apt-get` }
}

/**
 * Headless chromium with the flags a container needs; the caller closes it by its handle. Without the
 * background-networking flags chromium keeps dialling Google's hosts, which a closed network refuses.
 */
export function launchChromium(path: string): Promise<Browser> {
  return chromium.launch({
    executablePath: path,
    headless: true,
    args: [
      '--no-sandbox',
      '--headless=new',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}
