// What root may run code from: paths only root can have written. A root-run command (template
// deploy, a sweep, terraform under root) checks its directories, terraform and the provider's
// source with these before it runs anything, so the unprivileged listener (which faces the
// internet) can never plant a provider, a .terraform or a lock file that root then executes.
import { lstat, readdir, realpath } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";

/** The few filesystem calls the checks make; injectable, so tests can fake owners. */
export interface FsView {
  lstat(path: string): Promise<{ uid: number; mode: number; isSymbolicLink(): boolean; isDirectory(): boolean }>;
  realpath(path: string): Promise<string>;
  readdir(path: string): Promise<string[]>;
}

export const realFs: FsView = { lstat, realpath, readdir: (p) => readdir(p) };

/** A path root must not trust; the message is one line for the operator. */
export class UntrustedPathError extends Error {
  override readonly name = "UntrustedPathError";
}

const STICKY = 0o1000;
const WRITABLE_BY_OTHERS = 0o022;
const octal = (mode: number) => `0${(mode & 0o7777).toString(8)}`;

function judge(path: string, st: { uid: number; mode: number; isDirectory(): boolean }, intermediate: boolean): string | null {
  if (st.uid !== 0) return `${path} is owned by uid ${st.uid}, not root`;
  if ((st.mode & WRITABLE_BY_OTHERS) === 0) return null;
  // A sticky root-owned directory on the way (/tmp): others can add entries but never rename or
  // remove one of root's (unlink(2), rename(2): EPERM on a sticky directory), so root's path in it holds.
  if (intermediate && st.isDirectory() && (st.mode & STICKY) !== 0) return null;
  return `${path} is writable by group or others (mode ${octal(st.mode)})`;
}

/**
 * Resolves `path` and checks every component of the real path from / down: owned by root and
 * writable by nobody else (a sticky root-owned directory on the way excepted). A component that
 * turns into a symlink between the resolve and the check is refused. Returns the real path, which
 * the caller uses from then on.
 */
export async function assertRootOwnedPath(path: string, fs: FsView = realFs): Promise<string> {
  let real: string;
  try {
    real = await fs.realpath(resolve(path));
  } catch (err) {
    throw new UntrustedPathError(`${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const parts = real.split(sep).filter(Boolean);
  for (let i = 0; i <= parts.length; i++) {
    const p = sep + parts.slice(0, i).join(sep);
    const st = await fs.lstat(p);
    if (st.isSymbolicLink()) throw new UntrustedPathError(`${p} is a symlink (it was not when resolved)`);
    const why = judge(p, st, i < parts.length);
    if (why) throw new UntrustedPathError(why);
  }
  return real;
}

/**
 * Checks everything under the directory `dir` (whose own path assertRootOwnedPath checked): each
 * entry owned by root and writable by nobody else. A symlink is followed: its target's path and,
 * for a directory, its tree must pass too (terraform links providers from a filesystem mirror).
 */
export async function assertRootOwnedTree(dir: string, fs: FsView = realFs, seen = new Set<string>()): Promise<void> {
  if (seen.has(dir)) return;
  seen.add(dir);
  for (const name of await fs.readdir(dir)) {
    const p = join(dir, name);
    const st = await fs.lstat(p);
    if (st.isSymbolicLink()) {
      const target = await assertRootOwnedPath(p, fs);
      if ((await fs.lstat(target)).isDirectory()) await assertRootOwnedTree(target, fs, seen);
      continue;
    }
    const why = judge(p, st, false);
    if (why) throw new UntrustedPathError(why);
    if (st.isDirectory()) await assertRootOwnedTree(p, fs, seen);
  }
}

/** assertRootOwnedPath and, when it is a directory, assertRootOwnedTree; a missing path passes when `optional`. */
export async function assertRootOwned(path: string, o: { fs?: FsView; optional?: boolean } = {}): Promise<string | null> {
  const fs = o.fs ?? realFs;
  if (o.optional && !(await fs.lstat(path).then(() => true, () => false))) return null;
  const real = await assertRootOwnedPath(path, fs);
  if ((await fs.lstat(real)).isDirectory()) await assertRootOwnedTree(real, fs);
  return real;
}

/** The directory a root-run command will create: its parent must be root's already. */
export async function assertRootOwnedParent(path: string, fs: FsView = realFs): Promise<void> {
  await assertRootOwnedPath(dirname(resolve(path)), fs);
}

/** Whether this process runs as root (and so must trust only what root wrote). */
export const runningAsRoot = (): boolean => process.geteuid?.() === 0;
