// The admin's login page: how a browser presents the admin token. The form posts the token once to
// /login (same origin, form body, never a query string that would land in logs or history); the
// answer is an HttpOnly SameSite=Strict session cookie, and the status page itself stays script-free.
import { createHash } from "node:crypto";
import { esc } from "./status-page.js";

const CSS = `body{font:15px/1.45 system-ui,sans-serif;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center;background:#f6f7f9;color:#1f2328}
form{background:#fff;border:1px solid #d0d7de;border-radius:10px;padding:24px 28px;display:flex;flex-direction:column;gap:10px;width:min(420px,90vw)}
h1{font-size:18px;margin:0}p{margin:0;color:#57606a;font-size:13px}.err{color:#b42323}
input{font:inherit;padding:6px 8px;border:1px solid #d0d7de;border-radius:6px}
button{font:inherit;padding:6px 12px;border-radius:6px;border:1px solid #1f7a34;background:#2da44e;color:#fff;cursor:pointer}
code{font-family:ui-monospace,monospace;font-size:12px}`;

/** The login page's own policy: its stylesheet, and a form that posts to this origin only. */
export const LOGIN_PAGE_CSP = `default-src 'none'; style-src 'sha256-${createHash("sha256").update(CSS).digest("base64")}'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`;

export function renderLoginPage(error?: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<link rel="icon" href="data:,">
<title>pve-runners — admin token</title>
<style>${CSS}</style>
</head>
<body>
<form method="post" action="/login">
<h1>pve-runners</h1>
<p>The admin token (on the host: <code>/etc/pve-runners/credentials/admin-token</code>).</p>
${error ? `<p class="err" role="alert">${esc(error)}</p>` : ""}
<input type="password" name="token" autocomplete="current-password" aria-label="admin token" required autofocus>
<button type="submit">Show status</button>
</form>
</body>
</html>
`;
}
