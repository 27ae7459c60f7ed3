// FIDO (WebAuthn) flows of the method page: authenticate (opens a signing session) and link an
// authenticator with a registration code. Adding another after confirming with a linked one (FIDO
// or a card) is in card.js, which uses this file's helpers (window.ninshoFido).
// The server's options JSON (webauthn-rs) goes through PublicKeyCredential.parse*OptionsFromJSON
// and the browser's credential back through toJSON(); the server checks everything. All text
// comes from the page (data-msg-* and server error messages), so this file has no language.
'use strict';
(() => {
  const root = document.getElementById('fido');
  if (!root) return;
  const msg = root.dataset;
  const lang = msg.lang || 'ja';
  const authButton = document.getElementById('fido-auth');
  const codeForm = document.getElementById('link-code-form');
  const codeInput = document.getElementById('enroll-code');
  const nameInput = document.getElementById('credential-name');
  const { ShownError, show } = window.ninshoPage;
  const post = (path, body) => window.ninshoPage.post(path, body, { lang, failed: msg.msgFailed });

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

  // What the doctor sees when a flow fails. A browser-side failure (cancelled, timed out, already
  // linked, anything else) also drops the server's ceremony, which audits it.
  function describe(e) {
    if (e instanceof ShownError) return e.message;
    post('/fido/cancel').catch(() => {});
    if (e && (e.name === 'NotAllowedError' || e.name === 'AbortError')) return msg.msgCancelled;
    // The authenticator holds a credential from the exclude list: already linked.
    if (e && e.name === 'InvalidStateError') return msg.msgAlready;
    return msg.msgFailed;
  }
  const run = (flow) => window.ninshoPage.run(flow, describe);
  const supported = !!(window.PublicKeyCredential && PublicKeyCredential.parseCreationOptionsFromJSON);
  window.ninshoFido = { supported, create, get, describe };

  if (!supported) {
    show(msg.msgUnsupported);
    // Only the FIDO steps need WebAuthn; card login and linking by code go through the card agent,
    // and a linked card can still confirm adding another card.
    for (const id of ['fido-auth', 'link-code', 'link-existing']) {
      const b = document.getElementById(id);
      if (b) b.disabled = true;
    }
    const confirmWith = document.getElementById('confirm-with');
    if (confirmWith) {
      for (const o of confirmWith.querySelectorAll('option[value=fido]')) o.remove();
      if (!confirmWith.options.length) {
        for (const b of document.querySelectorAll('#link-existing-section button')) b.disabled = true;
      }
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
})();
