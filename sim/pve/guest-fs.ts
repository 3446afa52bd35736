// A container's file system, as far as `pct exec` and the simulated runner unit need one: files
// with modes, directories, and /run as a tmpfs that is empty again after every stop.
import { posix } from "node:path";

export interface FsEntry {
  path: string;
  kind: "file" | "dir";
  mode: number;
  size: number;
}

export class FsError extends Error {
  constructor(readonly code: "ENOENT" | "EEXIST" | "EISDIR" | "ENOTDIR", readonly path: string) {
    super(`${code}: ${path}`);
  }
}

const BASE_DIRS = ["/", "/bin", "/dev", "/etc", "/home", "/root", "/run", "/sbin", "/tmp", "/usr", "/usr/bin", "/usr/sbin", "/var", "/var/lib"];

export class GuestFs {
  private readonly files = new Map<string, { data: string; mode: number }>();
  private readonly dirs = new Map<string, number>();
  private readonly listeners = new Set<(path: string) => void>();

  constructor() {
    for (const d of BASE_DIRS) this.dirs.set(d, d === "/tmp" ? 0o1777 : 0o755);
  }

  static resolve(path: string, cwd = "/"): string {
    return posix.resolve(cwd, path);
  }

  isDir(path: string): boolean {
    return this.dirs.has(GuestFs.resolve(path));
  }

  isFile(path: string): boolean {
    return this.files.has(GuestFs.resolve(path));
  }

  read(path: string): string {
    const p = GuestFs.resolve(path);
    if (this.dirs.has(p)) throw new FsError("EISDIR", p);
    const f = this.files.get(p);
    if (!f) throw new FsError("ENOENT", p);
    return f.data;
  }

  /** Creates or truncates a file; a new file gets `mode` (an existing one keeps its own). */
  write(path: string, data: string, mode: number, append = false): void {
    const p = GuestFs.resolve(path);
    if (this.dirs.has(p)) throw new FsError("EISDIR", p);
    if (!this.dirs.has(posix.dirname(p))) throw new FsError("ENOENT", posix.dirname(p));
    const old = this.files.get(p);
    this.files.set(p, { data: append && old ? old.data + data : data, mode: old?.mode ?? mode });
    this.changed(p);
  }

  mkdir(path: string, mode: number, parents: boolean): void {
    const p = GuestFs.resolve(path);
    if (this.files.has(p)) throw new FsError("EEXIST", p);
    if (this.dirs.has(p)) {
      if (parents) return;
      throw new FsError("EEXIST", p);
    }
    const parent = posix.dirname(p);
    if (!this.dirs.has(parent)) {
      if (!parents || this.files.has(parent)) throw new FsError(this.files.has(parent) ? "ENOTDIR" : "ENOENT", parent);
      this.mkdir(parent, mode, true);
    }
    this.dirs.set(p, mode);
  }

  rename(from: string, to: string): void {
    const src = GuestFs.resolve(from);
    let dst = GuestFs.resolve(to);
    const f = this.files.get(src);
    if (!f) throw new FsError(this.dirs.has(src) ? "EISDIR" : "ENOENT", src);
    if (this.dirs.has(dst)) dst = posix.join(dst, posix.basename(src));
    if (!this.dirs.has(posix.dirname(dst))) throw new FsError("ENOENT", posix.dirname(dst));
    this.files.delete(src);
    this.files.set(dst, f);
    this.changed(dst);
  }

  remove(path: string): void {
    const p = GuestFs.resolve(path);
    if (this.dirs.has(p)) throw new FsError("EISDIR", p);
    if (!this.files.delete(p)) throw new FsError("ENOENT", p);
  }

  mode(path: string): number {
    const p = GuestFs.resolve(path);
    const m = this.files.get(p)?.mode ?? this.dirs.get(p);
    if (m === undefined) throw new FsError("ENOENT", p);
    return m;
  }

  chmod(path: string, mode: number): void {
    const p = GuestFs.resolve(path);
    const f = this.files.get(p);
    if (f) f.mode = mode;
    else if (this.dirs.has(p)) this.dirs.set(p, mode);
    else throw new FsError("ENOENT", p);
  }

  /** /run is a tmpfs: gone at every stop. */
  wipeTmpfs(): void {
    for (const p of [...this.files.keys()]) if (p.startsWith("/run/")) this.files.delete(p);
    for (const p of [...this.dirs.keys()]) if (p.startsWith("/run/")) this.dirs.delete(p);
  }

  /** Called with the path of every file written or renamed into place. */
  onChange(fn: (path: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Paths, modes and sizes only: contents may be secrets. */
  list(): FsEntry[] {
    const out: FsEntry[] = [];
    for (const [path, mode] of this.dirs) if (!BASE_DIRS.includes(path)) out.push({ path, kind: "dir", mode, size: 0 });
    for (const [path, f] of this.files) out.push({ path, kind: "file", mode: f.mode, size: Buffer.byteLength(f.data) });
    return out.sort((a, b) => a.path.localeCompare(b.path));
  }

  private changed(path: string): void {
    for (const fn of this.listeners) fn(path);
  }
}
