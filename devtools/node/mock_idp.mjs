// The TEST identity provider: oauth2-mock-server 8.x with identities and faults
// that the test suite sets over a loopback control API. A real OIDC flow:
// discovery, JWKS, /authorize (auto-approves), /token (RS256 ID token carrying
// the nonce), /userinfo.
//
//   node mock_idp.mjs --port 0      -> prints {"issuer": ..., "port": ...}
//
// Control API (loopback only):
//   POST /_control/identities {"login_hint", "claims": {sub, email, groups, ...}}
//   POST /_control/fault {"mode": deny|wrong_nonce|wrong_audience|expired|
//        bad_signature|stale_auth_time|early_auth_time|no_auth_time|
//        claims_in_userinfo_only|none}
//        applies to the NEXT authorization only
//   POST /_control/reset
import http from "node:http";
import { OAuth2Issuer, OAuth2Service } from "oauth2-mock-server";

const args = process.argv.slice(2);
const portArg = args.indexOf("--port");
const port = portArg >= 0 ? Number(args[portArg + 1]) : 0;
const HOST = "127.0.0.1";

const identities = new Map(); // login_hint -> claims
const codes = new Map(); // code -> {hint, fault, authTime, used}
const accessTokens = new Map(); // access token -> {hint, fault}
let pendingFault = "none";

const issuer = new OAuth2Issuer();
await issuer.keys.generate("RS256");
const service = new OAuth2Service(issuer);
const now = () => Math.floor(Date.now() / 1000);

service.on("beforeAuthorizeRedirect", (redirect, req) => {
  const url = redirect.url;
  const code = url.searchParams.get("code");
  const hint = typeof req.query.login_hint === "string" ? req.query.login_hint : "";
  const fault = pendingFault;
  pendingFault = "none";
  if (!code) return;
  if (fault === "deny" || !identities.has(hint)) {
    url.searchParams.delete("code");
    url.searchParams.set("error", "access_denied");
    url.searchParams.set(
      "error_description",
      fault === "deny" ? "the user refused" : "unknown user",
    );
    return;
  }
  codes.set(code, { hint, fault, authTime: now(), used: false });
});

function claimsFor(record) {
  return identities.get(record.hint) || {};
}

service.on("beforeTokenSigning", (token, req) => {
  const code = req.body && req.body.code;
  const record = codes.get(code);
  if (!record) return;
  const claims = claimsFor(record);
  const p = token.payload;
  p.sub = claims.sub;
  if ("scope" in p) {
    // the access token: remember whose it is for /userinfo
    p.jti = `${code}:access`;
    return;
  }
  p.auth_time = record.fault === "stale_auth_time" ? now() - 3600 : record.authTime;
  // Fresh enough for a 5-minute window, but from before the step-up was asked for.
  if (record.fault === "early_auth_time") p.auth_time = record.authTime - 60;
  if (record.fault === "no_auth_time") delete p.auth_time;
  if (record.fault !== "claims_in_userinfo_only") {
    for (const [k, v] of Object.entries(claims)) p[k] = v;
  }
  if (record.fault === "wrong_nonce") p.nonce = "not-the-nonce-you-sent";
  if (record.fault === "wrong_audience") p.aud = "some-other-client";
  if (record.fault === "expired") {
    p.iat = now() - 7200;
    p.nbf = now() - 7200;
    p.exp = now() - 3600;
  }
});

service.on("beforeResponse", (response, req) => {
  const code = req.body && req.body.code;
  if (req.body && req.body.grant_type === "authorization_code") {
    const record = codes.get(code);
    if (!record || record.used) {
      response.statusCode = 400;
      response.body = { error: "invalid_grant", error_description: "unknown or used code" };
      return;
    }
    record.used = true;
    accessTokens.set(response.body.access_token, record);
    if (record.fault === "bad_signature") {
      const [h, p, sig] = response.body.id_token.split(".");
      const flipped = (sig[0] === "A" ? "B" : "A") + sig.slice(1);
      response.body.id_token = `${h}.${p}.${flipped}`;
    }
  }
});

service.on("beforeUserinfo", (response, req) => {
  const auth = req.headers.authorization || "";
  const token = auth.startsWith("Bearer ") ? auth.slice(7) : "";
  const record = accessTokens.get(token);
  if (!record) {
    response.statusCode = 401;
    response.body = { error: "invalid_token" };
    return;
  }
  response.body = { ...claimsFor(record) };
});

function readJson(req) {
  return new Promise((resolve, reject) => {
    let data = "";
    req.on("data", (chunk) => {
      data += chunk;
    });
    req.on("end", () => {
      try {
        resolve(data ? JSON.parse(data) : {});
      } catch (err) {
        reject(err);
      }
    });
  });
}

async function control(req, res) {
  const send = (status, body) => {
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(JSON.stringify(body));
  };
  try {
    const body = req.method === "POST" ? await readJson(req) : {};
    if (req.url === "/_control/identities" && req.method === "POST") {
      if (!body.login_hint || !body.claims || !body.claims.sub) {
        return send(400, { error: "login_hint and claims.sub are required" });
      }
      identities.set(body.login_hint, body.claims);
      return send(200, { ok: true });
    }
    if (req.url === "/_control/fault" && req.method === "POST") {
      pendingFault = body.mode || "none";
      return send(200, { ok: true, mode: pendingFault });
    }
    if (req.url === "/_control/reset" && req.method === "POST") {
      identities.clear();
      codes.clear();
      accessTokens.clear();
      pendingFault = "none";
      return send(200, { ok: true });
    }
    return send(404, { error: "unknown control route" });
  } catch (err) {
    return send(400, { error: String(err) });
  }
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith("/_control/")) {
    control(req, res);
    return;
  }
  service.requestHandler(req, res);
});

server.listen(port, HOST, () => {
  const actual = server.address().port;
  issuer.url = `http://${HOST}:${actual}`;
  process.stdout.write(`${JSON.stringify({ issuer: issuer.url, port: actual })}\n`);
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
