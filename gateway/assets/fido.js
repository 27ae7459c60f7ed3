// FIDO (WebAuthn) flows of the method page: authenticate (opens a signing session), link an
// authenticator with a registration code, or link another one after confirming with a linked one.
// The server's options JSON (webauthn-rs) goes through PublicKeyCredential.parse*OptionsFromJSON
// and the browser's credential back through toJSON(); the server checks everything. All text
// comes from the page (data-msg-* and server error messages), so this file has no language.
'use strict';
(() => {
  const root = document.getElementById('fido');
  if (!root) return;
  const msg = root.dataset;
  const lang = msg.lang || 'ja';
  const status = document.getElementById('fido-status');
  const working = document.getElementById('fido-working');
  const authButton = document.getElementById('fido-auth');
  const codeForm = document.getElementById('link-code-form');
  const codeInput = document.getElementById('enroll-code');
  const nameInput = document.getElementById('credential-name');
  const existingButton = document.getElementById('link-existing');

  class ServerError extends Error {}

  const show = (text) => { status.textContent = text || ''; };

  // POSTs JSON and returns the JSON answer; refusals carry a message in the page's language.
  async function post(path, body) {
    const res = await fetch(`${path}?lang=${encodeURIComponent(lang)}`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body || {}),
    });
    let data = null;
    try { data = await res.json(); } catch (_) { /* not JSON: an error page */ }
    if (!res.ok || !data) {
      if (res.status === 401) setTimeout(() => location.assign('/login'), 2500);
      throw new ServerError((data && data.message) || msg.msgFailed);
    }
    return data;
  }

  async function create(options) {
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey);
    const credential = await navigator.credentials.create({ publicKey });
    return credential.toJSON();
  }

  async function get(options) {
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey);
    const credential = await navigator.credentials.get({ publicKey });
    return credential.toJSON();
  }

  let busy = false;
  async function run(flow) {
    if (busy) return;
    busy = true;
    show('');
    working.hidden = false;
    try {
      const next = await flow();
      if (next) location.assign(next);
    } catch (e) {
      if (e instanceof ServerError) {
        show(e.message);
      } else if (e && (e.name === 'NotAllowedError' || e.name === 'AbortError')) {
        // Cancelled or timed out in the browser: let the server drop (and audit) the ceremony.
        show(msg.msgCancelled);
        post('/fido/cancel').catch(() => {});
      } else if (e && e.name === 'InvalidStateError') {
        // The authenticator holds a credential from the exclude list: already linked.
        show(msg.msgAlready);
        post('/fido/cancel').catch(() => {});
      } else {
        show(msg.msgFailed);
        post('/fido/cancel').catch(() => {});
      }
    } finally {
      busy = false;
      working.hidden = true;
    }
  }

  if (!window.PublicKeyCredential || !PublicKeyCredential.parseCreationOptionsFromJSON) {
    show(msg.msgUnsupported);
    // Only the FIDO buttons need WebAuthn; card login and linking by code go through the card agent.
    for (const b of root.querySelectorAll('button')) {
      if (!b.dataset.card || b.id.startsWith('link-fido')) b.disabled = true;
    }
    return;
  }

  if (authButton) {
    authButton.addEventListener('click', () => run(async () => {
      const options = await post('/fido/auth/start');
      const credential = await get(options);
      return (await post('/fido/auth/finish', { credential })).redirect;
    }));
  }

  if (codeForm) {
    codeForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      run(async () => {
        const options = await post('/fido/register/start', { code: codeInput.value });
        const credential = await create(options);
        return (await post('/fido/register/finish', { credential, name: nameInput.value })).redirect;
      });
    });
  }

  if (existingButton) {
    existingButton.addEventListener('click', () => run(async () => {
      const request = await post('/fido/link/start');
      const assertion = await get(request);
      const creation = await post('/fido/link/finish', { credential: assertion });
      const credential = await create(creation);
      return (await post('/fido/register/finish', { credential, name: nameInput.value })).redirect;
    }));
  }
})();
