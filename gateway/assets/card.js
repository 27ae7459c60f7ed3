// Card flows of the method page (docs/design.md §3.3, §3.5): log in with an HPKI or My Number card, or
// link one with a registration code; and adding another authenticator after confirming with a
// linked one (FIDO through fido.js's helpers, or a card with its PIN):
//   confirm with FIDO:  /fido/link/start → get() → /fido/link/finish {credential, card?}
//   confirm with a card: /auth/card/challenge {card, purpose: "confirm", then} → agent → /auth/card/finish
// either answering the next step: creation options (FIDO to add) or a card link challenge. After a
// card confirmation the card to add goes on the reader first ("Continue").
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
  const nameInput = document.getElementById('credential-name');
  const confirmWith = document.getElementById('confirm-with');
  const swap = document.getElementById('confirm-swap');
  const continueButton = document.getElementById('confirm-continue');
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

  // Runs `flow(pin)` with the PIN as typed (required unless `needPin` is false); the PIN is not
  // kept on the page once used. `describe` turns a failure into the text to show.
  const withPin = (flow, { needPin = true, describe } = {}) => window.ninshoPage.run(async () => {
    const pin = pinInput.value;
    try {
      if (needPin && !pin) {
        pinInput.focus();
        throw new ShownError(msg.msgPinFormat);
      }
      return await flow(pin);
    } finally {
      pinInput.value = '';
    }
  }, describe || ((e) => (e instanceof ShownError ? e.message : msg.msgFailed)));

  // Gets a challenge, has the agent sign it and the gateway check it.
  const run = (challengeRequest) => withPin(async (pin) => {
    const challenge = await challengeRequest();
    const answer = await sign(challenge, pin);
    return (await gateway('/auth/card/finish', answer)).redirect;
  });

  for (const card of ['hpki', 'jpki']) {
    const login = document.getElementById(`card-${card}`);
    if (login) login.addEventListener('click', () => run(() => gateway('/auth/card/challenge', { card })));
    const byCode = document.getElementById(`link-code-${card}`);
    if (byCode) {
      byCode.addEventListener('click', () => run(
        () => gateway('/auth/card/challenge', { card, purpose: 'link', code: codeInput.value }),
      ));
    }
  }

  // Adding another authenticator after confirming with a linked one.
  const fido = () => window.ninshoFido;
  const describeAdd = (e) => {
    if (e instanceof ShownError) return e.message;
    return fido() ? fido().describe(e) : msg.msgFailed;
  };
  let pending = null; // a card link challenge waiting for the card to add (after a card confirmation)
  const showSwap = (on) => {
    if (swap) swap.hidden = !on;
    if (continueButton) continueButton.hidden = !on;
  };

  function addAnother(add) {
    const by = confirmWith.value;
    pending = null;
    showSwap(false);
    // A PIN is needed for a card to confirm with, or for the card to add right after a FIDO check.
    withPin(async (pin) => {
      let next;
      if (by === 'fido') {
        const request = await gateway('/fido/link/start');
        const assertion = await fido().get(request);
        next = await gateway('/fido/link/finish', add === 'fido' ? { credential: assertion } : { credential: assertion, card: add });
      } else {
        const challenge = await gateway('/auth/card/challenge', { card: by, purpose: 'confirm', then: add });
        next = await gateway('/auth/card/finish', await sign(challenge, pin));
      }
      if (add === 'fido') {
        const credential = await fido().create(next);
        return (await gateway('/fido/register/finish', { credential, name: nameInput ? nameInput.value : '' })).redirect;
      }
      if (by === 'fido') {
        // The card to add is on the reader already, with its PIN typed.
        return (await gateway('/auth/card/finish', await sign(next, pin))).redirect;
      }
      // Confirmed with a card: the card to add goes on the reader first.
      pending = next;
      showSwap(true);
      return null;
    }, { needPin: !(by === 'fido' && add === 'fido'), describe: describeAdd });
  }

  if (confirmWith) {
    for (const b of document.querySelectorAll('#link-existing-section button[data-add]')) {
      b.addEventListener('click', () => addAnother(b.dataset.add));
    }
  }
  if (continueButton) {
    continueButton.addEventListener('click', () => withPin(async (pin) => {
      if (!pending) return null;
      // A refusal by the agent (wrong PIN, no card) leaves the challenge for another try.
      const answer = await sign(pending, pin);
      pending = null;
      showSwap(false);
      return (await gateway('/auth/card/finish', answer)).redirect;
    }));
  }
})();
