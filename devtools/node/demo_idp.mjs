// The DEMO identity provider: npm oidc-provider with the demo identities.
// Its built-in development login page takes any login and any password; the
// login decides the groups (see ACCOUNTS). PKCE (S256) is required, the
// client authenticates with client_secret_basic, and only `sub` is in the ID
// token (email and groups come from /userinfo, as with many company IdPs).
//
//   DEMO_IDP_CLIENT_SECRET=S node demo_idp.mjs --port 5556 --client-id ID \
//        --redirect-uri http://127.0.0.1:5000/auth/callback \
//        [--post-logout-redirect-uri http://127.0.0.1:5000/login]
import crypto from "node:crypto";
import Provider from "oidc-provider";

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const HOST = "127.0.0.1";
const port = Number(arg("port", "5556"));
const clientId = arg("client-id", "console-demo");
// From the environment: a secret on the command line is visible in `ps` to every user.
const clientSecret = process.env.DEMO_IDP_CLIENT_SECRET;
const redirectUri = arg("redirect-uri");
const postLogout = arg("post-logout-redirect-uri");
if (!clientSecret || !redirectUri) {
  process.stderr.write("DEMO_IDP_CLIENT_SECRET and --redirect-uri are required\n");
  process.exit(2);
}

const ACCOUNTS = {
  "support@example.test": { groups: ["ops-support"], name: "Sam Support" },
  "admin@example.test": { groups: ["ops-admins"], name: "Ada Admin" },
  "admin2@example.test": { groups: ["ops-admins"], name: "Ben Second-Admin" },
  "auditor@example.test": { groups: ["ops-audit"], name: "Aud Itor" },
  "nogroup@example.test": { groups: ["marketing"], name: "Nora No-Group" },
};

const configuration = {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: postLogout ? [postLogout] : [],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
      // auth_time in every ID token: the console checks it for step-up.
      require_auth_time: true,
    },
  ],
  pkce: { required: () => true },
  scopes: ["openid", "email", "profile", "groups"],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name"],
    groups: ["groups"],
  },
  async findAccount(_ctx, id) {
    const known = ACCOUNTS[id] || { groups: [], name: id };
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: id.includes("@") ? id : `${id}@example.test`,
          email_verified: true,
          name: known.name,
          groups: known.groups,
        };
      },
    };
  },
  cookies: { keys: [crypto.randomBytes(32).toString("hex")] },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      // The default page loads web fonts from the internet; this one is local.
      async logoutSource(ctx, form) {
        ctx.body = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Sign out of the demo identity provider</title></head><body>
<main><h1>Sign out of the demo identity provider?</h1>
<p>The console session has ended. Sign out here too, so the next sign-in asks who you are.</p>
${form}
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button></main></body></html>`;
      },
    },
  },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 120,
    IdToken: 3600,
    Interaction: 3600,
    Session: 12 * 3600,
    Grant: 12 * 3600,
  },
};

const issuer = `http://${HOST}:${port}`;
const provider = new Provider(issuer, configuration);
provider.on("server_error", (_ctx, err) => process.stderr.write(`server_error: ${err}\n`));

const server = provider.listen(port, HOST, () => {
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
