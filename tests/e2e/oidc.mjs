// Browser test of sign-in through the clinic's EMR OpenID Connect provider (docs/design.md §3.17,
// issue 23): Debian's headless Chromium with the clinic certificate, a real provider
// (tests/oidc/provider.mjs: oidc-provider, consent-free) and Chromium's CDP virtual WebAuthn
// authenticator for the presence step that follows, exactly as after a password.
//
// Flow: the login page offers 「EMRのアカウントでログイン」 instead of the password form → the
// provider → back to the set-up page (nothing linked yet) → link a passkey with the code → sign
// out → sign in through the EMR again → the identity-check page → FIDO → 認証済み (a signing
// session, left open for e2e.rs to check).
//
// Started by tests/integration/e2e.rs with BASE_URL, CLIENT_CERT, CLIENT_KEY, ENROLL_CODE,
// ISSUER (the provider's address); optional CHROMIUM, ARTIFACTS.
import { check, env, run, shots, state } from './lib.mjs';

const base = env('BASE_URL');
const issuer = env('ISSUER');

await run(async ({ ctx, page }) => {
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'usb', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  });
  // Every address the browser passed through, to show it went to the provider and back.
  const visited = [];
  page.on('request', (r) => { if (r.isNavigationRequest()) visited.push(r.url()); });

  const signIn = async (lands) => {
    state.step = `sign in through the EMR (to ${lands})`;
    visited.length = 0;
    await page.goto(`${base}/login`);
    check((await page.textContent('#upstream-login')).includes('EMRのアカウントでログイン'), 'the login page offers the EMR sign-in');
    check((await page.locator('input[type=password]').count()) === 0, 'no password form');
    await Promise.all([page.waitForURL(`**/${lands}`), page.click('#upstream-login')]);
    check(visited.some((u) => u.startsWith(`${issuer}/auth?`)), 'the browser went to the provider');
    check(visited.some((u) => u.startsWith(`${base}/login/oidc/callback?`)), 'and came back to the callback');
  };

  state.step = 'login page';
  await page.goto(`${base}/login`);
  await shots(page, 'oidc-login');

  await signIn('manage');
  check((await page.textContent('#linked-none')).includes('まだ登録されていません'), 'signed in: the set-up page, nothing linked yet');

  state.step = 'link with code';
  await page.fill('#enroll-code', env('ENROLL_CODE'));
  await page.fill('#credential-name', 'EMRキー');
  await Promise.all([page.waitForURL(/\/manage\?done=linked_fido/), page.click('#link-code')]);
  check((await page.textContent('#linked')).includes('EMRキー'), 'the passkey is linked');

  state.step = 'logout';
  await Promise.all([page.waitForURL(/signed_out/), page.click('#sign-out')]);
  check((await page.textContent('p.notice')).includes('ログアウトしました'), 'signed out');

  await signIn('methods');
  state.step = 'presence';
  check(!(await page.content()).includes('認証済み'), 'the EMR sign-in alone is no presence check');
  await shots(page, 'oidc-methods');
  await Promise.all([page.waitForURL(/\/methods\?done=authenticated_fido/), page.click('#fido-auth')]);
  check((await page.textContent('#signing-state')).trim() === '認証済み', 'FIDO opened the signing session');
  await shots(page, 'oidc-methods-session');

  state.step = 'refused callback';
  const res = await page.goto(`${base}/login/oidc/callback?state=not-a-flow&code=x`);
  check(res.status() === 400 && (await page.isVisible('#back')), 'a stray callback: a refusal page with a way back');
  check((await page.textContent('p.error')).includes('ログインの手続きが見つかりません'), 'saying why');
  await shots(page, 'oidc-refused');
});
