// A private in-memory copy of the store, for what must change nothing (`sweep --dry-run`): opening
// the file itself would create its -wal and -shm files and run migrations in the state dir.
import Database from "better-sqlite3";
import { existsSync, readFileSync } from "node:fs";

/**
 * The database at `path` as an in-memory database (empty when there is none). With a -wal file (a
 * listener runs, or one died) a read-only connection sees the committed WAL frames and serializes
 * them; its -shm already exists then, so nothing is created. The copy's header is set to the
 * rollback journal: an in-memory database cannot be in WAL mode (https://www.sqlite.org/fileformat.html,
 * offsets 18-19: 1 legacy, 2 WAL).
 */
export function storeSnapshot(path: string): Database.Database {
  if (!existsSync(path)) return new Database(":memory:");
  let image: Buffer;
  if (existsSync(`${path}-wal`)) {
    const ro = new Database(path, { readonly: true, fileMustExist: true });
    try {
      image = ro.serialize();
    } finally {
      ro.close();
    }
  } else image = readFileSync(path);
  if (image.length >= 20) {
    image[18] = 1;
    image[19] = 1;
  }
  return new Database(image);
}
