#!/usr/bin/env node
// An OAuth2/OpenID Connect provider on 127.0.0.1 for the hub's GenericOAuthenticator in tests:
// oauth2-mock-server (npm), with real RS256-signed tokens, discovery, authorize, token and
// userinfo endpoints. Its /authorize logs the browser in without a form (it has none), so
// the person it logs in is fixed per run: --user NAME becomes `sub`, `preferred_username`
// and `email` of every token and userinfo answer. A hub that shows that name got it from
// this provider only.
//
//   node oidc_server.mjs --user NAME [--host 127.0.0.1] [--port 0]
//
// Prints one JSON line {"issuer": URL} once it listens, then one JSON line per authorize,
// token and userinfo request it answers ({"request": "authorize", "url": ...}), so a test can
// see the browser and the hub went through it.
// Stops on SIGTERM.

import { Events, OAuth2Server } from "oauth2-mock-server";
import { parseArgs } from "./lib.mjs";

const { options } = parseArgs(process.argv.slice(2), ["user", "host", "port"]);
if (!options.user) {
  process.stderr.write("usage: node oidc_server.mjs --user NAME [--host H] [--port P]\n");
  process.exit(2);
}
const host = options.host || "127.0.0.1";
const claims = {
  sub: options.user,
  preferred_username: options.user,
  email: `${options.user}@example.org`,
};

const server = new OAuth2Server();
await server.issuer.keys.generate("RS256");
const seen = (endpoint, req) => console.log(JSON.stringify({ request: endpoint, url: req.url }));
server.service.on(Events.BeforeAuthorizeRedirect, (_redirect, req) => seen("authorize", req));
server.service.on(Events.BeforeTokenSigning, (token, req) => {
  Object.assign(token.payload, claims);
  seen("token", req);
});
server.service.on(Events.BeforeUserinfo, (userinfo, req) => {
  userinfo.body = { ...claims };
  seen("userinfo", req);
});
await server.start(Number(options.port || 0), host);
// the library names the issuer "localhost"; the hub and the browser use the address it
// listens on
server.issuer.url = `http://${host}:${server.address().port}`;
console.log(JSON.stringify({ issuer: server.issuer.url }));

const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
