// Ticket authentication (pve-access-control src/PVE/API2/AccessControl.pm `create_ticket`,
// src/PVE/AccessControl.pm assemble_ticket/verify_ticket, pve-http-server's CSRF check): a
// username and password buy a ticket, sent back as the PVEAuthCookie cookie, and a
// CSRFPreventionToken every write must carry in its header. bpg logs in this way with
// PROXMOX_VE_USERNAME/PASSWORD (proxmox/api/authenticator.go). The simulator knows one
// password user, root@pam — the only user PVE lets set keyctl on a container.
import { createHmac, randomBytes } from "node:crypto";
import type { Caller, TokenDef } from "./privileges.js";

/** root@pam's password in the simulator (PveSimOptions.rootPassword). */
export const SIM_ROOT_PASSWORD = "pve-sim-root-password";

/** Tickets live 2 hours in PVE. */
const TICKET_LIFETIME_S = 7200;

/** root@pam logged in with a password: every privilege, and `$authuser eq 'root@pam'`. */
const ROOT_PAM: TokenDef = { id: "root@pam", secret: "", superuser: true, acls: [] };

export class Tickets {
  private readonly key = randomBytes(32);

  constructor(private readonly rootPassword: string) {}

  /** POST /access/ticket: the ticket pair, or null (authentication failure). */
  login(username: string | undefined, password: string | undefined): { username: string; ticket: string; CSRFPreventionToken: string } | null {
    // PVE accepts a realm-less name with a separate `realm`; the simulator wants user@realm.
    if (username !== "root@pam" || password === undefined || password !== this.rootPassword) return null;
    const time = Math.floor(Date.now() / 1000).toString(16).toUpperCase();
    const plain = `PVE:${username}:${time}`;
    const ticket = `${plain}::${this.sign(plain)}`;
    return { username, ticket, CSRFPreventionToken: `${time}:${this.sign(`${time}:${username}`)}` };
  }

  /** The caller a PVEAuthCookie stands for, or null when it is not a valid, unexpired ticket. */
  verify(cookieHeader: string | undefined): { caller: Caller; time: string } | null {
    const m = /(?:^|;\s*)PVEAuthCookie=([^;]+)/.exec(cookieHeader ?? "");
    if (!m) return null;
    const ticket = decodeURIComponent(m[1]);
    const t = /^(PVE:([^:]+):([0-9A-F]{8}))::(.+)$/.exec(ticket);
    if (!t || this.sign(t[1]) !== t[4]) return null;
    if (Date.now() / 1000 - Number.parseInt(t[3], 16) > TICKET_LIFETIME_S) return null;
    return { caller: { userid: t[2], user: t[2], tokenid: "", token: ROOT_PAM }, time: t[3] };
  }

  /** The CSRFPreventionToken header of a write, checked against the ticket's user. */
  csrfOk(token: string | undefined, userid: string): boolean {
    const m = /^([0-9A-F]{8}):(.+)$/.exec(token ?? "");
    return m !== null && this.sign(`${m[1]}:${userid}`) === m[2];
  }

  private sign(data: string): string {
    return createHmac("sha256", this.key).update(data).digest("base64");
  }
}
