// Card flows of the method page (docs/design.md §3.3, §3.5): log in with an HPKI or My Number card, or
// link one (with a registration code, or after confirming with a linked FIDO authenticator).
//   1. POST /auth/card/challenge (gateway)      → {challenge, origin, agent_url, card}
//   2. POST <agent>/v1/sign {card, challenge, origin, pin} (card agent on this PC)
//   3. POST /auth/card/finish with the agent's answer unchanged (gateway)
// The PIN goes to the agent only (step 2); step 3 forwards exactly the agent's four fields.
// All text comes from the page (data-msg-*) or the gateway's error messages: no language here.
'use strict';
(() => {
  const root = document.getElementById('card');
  if (!root) return;
  const msg = root.dataset;
  const lang = msg.lang || 'ja';
  const agentUrl = msg.agentUrl;
  const pinInput = document.getElementById('card-pin');
  const codeInput = document.getElementById('enroll-code');
  const { ShownError, post } = window.ninshoPage;
  const gateway = (path, body) => post(path, body, { lang, failed: msg.msgFailed });

  // The agent's error codes (agent/README.md) → this page's messages.
  function agentMessage(data) {
    switch (data && data.error) {
      case 'no_reader': return msg.msgNoReader;
      case 'no_card': return msg.msgNoCard;
      case 'wrong_card': return msg.msgWrongCard;
      case 'pin_format': return msg.msgPinFormat;
      case 'wrong_pin':
        return typeof data.tries_left === 'number'
          ? `${msg.msgWrongPin} ${msg.msgTriesLeft} ${data.tries_left}`
          : msg.msgWrongPin;
      case 'pin_locked': return msg.msgPinLocked;
      case 'card_removed': return msg.msgCardRemoved;
      case 'origin_not_allowed': return msg.msgOrigin;
      case 'card_error': return msg.msgCardError;
      default: return msg.msgCardError;
    }
  }

  // Is a card agent listening at all? `/v1/hello` answers every origin (with only its name and
  // version), so a failure here means no agent at that address, while a failure of the real call
  // after a good hello means the agent refuses this page's origin (its --allow-origin).
  async function hello() {
    try {
      const res = await fetch(`${agentUrl}/v1/hello`, { method: 'GET', mode: 'cors', credentials: 'omit' });
      const data = await res.json();
      return res.ok && data && data.agent === 'ninsho';
    } catch (_) {
      return false;
    }
  }

  async function sign(challenge, pin) {
    if (!(await hello())) throw new ShownError(msg.msgAgentDown);
    let res;
    try {
      res = await fetch(`${agentUrl}/v1/sign`, {
        method: 'POST',
        mode: 'cors',
        credentials: 'omit',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ card: challenge.card, challenge: challenge.challenge, origin: challenge.origin, pin }),
      });
    } catch (_) {
      // The agent answered hello a moment ago: this is its CORS refusal of this page's origin
      // (refused origins get no CORS headers), or it stopped in between.
      throw new ShownError((await hello()) ? msg.msgOrigin : msg.msgAgentDown);
    }
    let data = null;
    try { data = await res.json(); } catch (_) { /* not JSON */ }
    if (!res.ok || !data) throw new ShownError(agentMessage(data));
    return { client_data: data.client_data, signature: data.signature, certificate: data.certificate, chain: data.chain || [] };
  }

  // Reads the PIN, gets a challenge, has the agent sign it and the gateway check it.
  const run = (challengeRequest) => window.ninshoPage.run(async () => {
    const pin = pinInput.value;
    try {
      if (!pin) {
        pinInput.focus();
        throw new ShownError(msg.msgPinFormat);
      }
      const challenge = await challengeRequest();
      const answer = await sign(challenge, pin);
      return (await gateway('/auth/card/finish', answer)).redirect;
    } finally {
      // The PIN is not kept on the page once used.
      pinInput.value = '';
    }
  }, (e) => (e instanceof ShownError ? e.message : msg.msgFailed));

  for (const card of ['hpki', 'jpki']) {
    const login = document.getElementById(`card-${card}`);
    if (login) login.addEventListener('click', () => run(() => gateway('/auth/card/challenge', { card })));
    const byCode = document.getElementById(`link-code-${card}`);
    if (byCode) {
      byCode.addEventListener('click', () => run(
        () => gateway('/auth/card/challenge', { card, purpose: 'link', code: codeInput.value }),
      ));
    }
    const byFido = document.getElementById(`link-fido-${card}`);
    if (byFido && window.PublicKeyCredential) {
      byFido.addEventListener('click', () => run(async () => {
        const request = await gateway('/fido/link/start');
        const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(request.publicKey);
        const assertion = await navigator.credentials.get({ publicKey });
        return gateway('/fido/link/finish', { credential: assertion.toJSON(), card });
      }));
    }
  }
})();
