//! User accounts, and the login IDs migration 0009 folds (`users.login_folded`).


use super::{Backend, Error, Result, Store, corrupt, read_one, row, transaction, tx_execute, with_pool, with_reader, write_execute};

impl Store {
    /// Every (clinic, 医籍番号) held by more than one account, with the accounts' login IDs.
    pub(super) async fn shared_medical_reg_nos(&self) -> Result<Vec<String>> {
        let rows: Vec<SharedRow> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT u.clinic_id AS clinic_id, u.medical_reg_no AS medical_reg_no, u.login_id AS login_id FROM users u
                 WHERE u.medical_reg_no IS NOT NULL AND EXISTS (
                     SELECT 1 FROM users o WHERE o.clinic_id = u.clinic_id AND o.medical_reg_no = u.medical_reg_no
                     AND o.id <> u.id)",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(group_accounts(rows.into_iter().map(|r| ((r.clinic_id, r.medical_reg_no), r.login_id)))
            .map(|((clinic, number), logins)| format!("clinic {clinic}, 医籍番号 {number}: {}", logins.join(", ")))
            .collect())
    }

    /// Fills `users.login_folded` where it is empty: rows from before migration 0009, or written
    /// by an older version since. Refuses, naming the accounts and changing nothing, when two
    /// login IDs of one clinic fold alike: merging or renaming accounts is an operator's call.
    pub(super) async fn fill_login_folded(&self) -> Result<()> {
        let missing: Vec<LoginRow> = with_reader!(self, |pool| {
            sqlx::query_as("SELECT id, clinic_id, login_id FROM users WHERE login_folded IS NULL").fetch_all(pool).await
        })?;
        if missing.is_empty() {
            return Ok(());
        }
        let all: Vec<LoginRow> = with_reader!(self, |pool| {
            sqlx::query_as("SELECT id, clinic_id, login_id FROM users").fetch_all(pool).await
        })?;
        let collisions: Vec<String> =
            group_accounts(all.into_iter().map(|r| ((r.clinic_id, crate::login_id::fold(&r.login_id)), r.login_id)))
                .filter(|(_, logins)| logins.len() > 1)
                .map(|((clinic, _), logins)| format!("clinic {clinic}: {}", logins.join(", ")))
                .collect();
        if !collisions.is_empty() {
            return Err(Error::NeedsOperator(format!(
                "login IDs must be unique per clinic ignoring width and case (NFKC and case folding), and these \
                 accounts would become one; rename or remove all but one of each group, then start again \
                 (nothing was changed; docs/security/login-ids.md): {}",
                collisions.join("; ")
            )));
        }
        transaction!(self, |tx| {
            for r in &missing {
                let folded = crate::login_id::fold(&r.login_id);
                tx_execute!(tx, "UPDATE users SET login_folded = $2 WHERE id = $1 AND login_folded IS NULL", &r.id, &folded)?;
            }
            Ok(())
        })
    }


    /// Adds a user.
    pub async fn add_user(&self, user: &NewUser<'_>, now: i64) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO users (id, clinic_id, login_id, login_folded, kind, name, medical_reg_no, password_hash, enabled,
                    created_at, updated_at, password_temporary, password_set_at, test_account)
                 VALUES ($1, $2, $3, $9, $4, $5, $6, $7, TRUE, $8, $8, $10, $8, $11)",
            )
            .bind(user.id)
            .bind(user.clinic_id)
            .bind(user.login_id)
            .bind(user.kind.as_str())
            .bind(user.name)
            .bind(user.medical_reg_no)
            .bind(user.password_hash)
            .bind(now)
            .bind(crate::login_id::fold(user.login_id))
            .bind(user.password_temporary)
            .bind(user.test_account)
            .execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// A user by clinic and login ID, compared folded ([`crate::login_id::fold`]): `ＤＯＣＴＯＲ１`
    /// finds `doctor1`.
    pub async fn user_by_login(&self, clinic_id: &str, login_id: &str) -> Result<User> {
        let folded = crate::login_id::fold(login_id);
        self.user_of_clinic(concat!("SELECT ", user_columns!(), " FROM users WHERE clinic_id = $1 AND login_folded = $2"), clinic_id, &folded)
            .await
    }

    /// The account of a clinic holding a 医籍番号.
    pub async fn user_by_medical_reg_no(&self, clinic_id: &str, medical_reg_no: &str) -> Result<User> {
        self.user_of_clinic(concat!("SELECT ", user_columns!(), " FROM users WHERE clinic_id = $1 AND medical_reg_no = $2"), clinic_id, medical_reg_no)
            .await
    }

    /// The one user `sql` selects with `$1` the clinic and `$2` the key.
    async fn user_of_clinic(&self, sql: &'static str, clinic_id: &str, key: &str) -> Result<User> {
        let row: UserRow =
            with_reader!(self, |pool| sqlx::query_as(sql).bind(clinic_id).bind(key).fetch_one(pool).await)?;
        User::try_from(row)
    }

    /// A user by id.
    pub async fn user(&self, id: &str) -> Result<User> {
        let row = read_one!(self, UserRow, concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"), id)?;
        User::try_from(row)
    }

    /// Users, optionally of one clinic.
    pub async fn list_users(&self, clinic_id: Option<&str>) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = with_reader!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE ($1 IS NULL OR clinic_id = $1) ORDER BY clinic_id, login_id"
            ))
            .bind(clinic_id)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(User::try_from).collect()
    }

    /// Enables or disables a user.
    pub async fn set_user_enabled(&self, clinic_id: &str, login_id: &str, enabled: bool, now: i64) -> Result<User> {
        let done = with_pool!(self, |pool| {
            sqlx::query("UPDATE users SET enabled = $3, updated_at = $4, version = version + 1 WHERE clinic_id = $1 AND login_folded = $2")
                .bind(clinic_id)
                .bind(crate::login_id::fold(login_id))
                .bind(enabled)
                .bind(now)
                .execute(pool).await.map(|r| r.rows_affected())
        })?;
        if done == 0 {
            return Err(Error::NotFound);
        }
        self.user_by_login(clinic_id, login_id).await
    }

    /// Replaces a user's password hash.
    pub async fn set_user_password(&self, clinic_id: &str, login_id: &str, hash: &str, temporary: bool, now: i64) -> Result<User> {
        let done = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE users SET password_hash = $3, password_temporary = $5, password_set_at = $4, updated_at = $4,
                    version = version + 1
                 WHERE clinic_id = $1 AND login_folded = $2",
            )
                .bind(clinic_id)
                .bind(crate::login_id::fold(login_id))
                .bind(hash)
                .bind(now)
                .bind(temporary)
                .execute(pool).await.map(|r| r.rows_affected())
        })?;
        if done == 0 {
            return Err(Error::NotFound);
        }
        self.user_by_login(clinic_id, login_id).await
    }

    /// Stores the password a user chose (a permanent one), if the stored hash is still
    /// `old_hash`: `false` when it changed meanwhile (an operator set another), so a doctor's
    /// change never overwrites an operator's.
    pub async fn replace_own_password(&self, user_id: &str, old_hash: &str, hash: &str, now: i64) -> Result<bool> {
        let done = write_execute!(
            self,
            "UPDATE users SET password_hash = $3, password_temporary = FALSE, password_set_at = $4, updated_at = $4,
                version = version + 1
             WHERE id = $1 AND password_hash = $2",
            user_id,
            old_hash,
            hash,
            now,
        )?;
        Ok(done == 1)
    }
}

row! {
    /// Who holds a 医籍番号 another account of the clinic holds too.
    struct SharedRow {
        clinic_id: String,
        medical_reg_no: String,
        login_id: String,
    }
}

row! {
    /// A login ID to fold.
    struct LoginRow {
        id: String,
        clinic_id: String,
        login_id: String,
    }
}

/// Values grouped by key, keys and values sorted (so a caller need not order rows by a key the
/// database cannot compute, such as a folded login ID).
fn group_accounts<K: Ord>(rows: impl IntoIterator<Item = (K, String)>) -> impl Iterator<Item = (K, Vec<String>)> {
    let mut rows: Vec<(K, String)> = rows.into_iter().collect();
    rows.sort();
    let mut groups: Vec<(K, Vec<String>)> = Vec::new();
    for (key, value) in rows {
        match groups.last_mut() {
            Some((last, values)) if *last == key => values.push(value),
            _ => groups.push((key, vec![value])),
        }
    }
    groups.into_iter()
}

/// User types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, strum::IntoStaticStr, strum::EnumString, strum::VariantNames)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum UserKind {
    /// 医師: may authenticate for e-prescription signing.
    Doctor,
    /// Any other EMR user type.
    Staff,
}

impl UserKind {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}


/// A user to add.
#[derive(Debug)]
pub struct NewUser<'a> {
    /// UUID.
    pub id: &'a str,
    /// Clinic.
    pub clinic_id: &'a str,
    /// Login ID, unique within the clinic after folding ([`crate::login_id::fold`]).
    pub login_id: &'a str,
    /// Type.
    pub kind: UserKind,
    /// Name.
    pub name: &'a str,
    /// 医籍番号 (doctors).
    pub medical_reg_no: Option<&'a str>,
    /// argon2id PHC string.
    pub password_hash: &'a str,
    /// The user must choose a new password at the next login.
    pub password_temporary: bool,
    /// A test account (`admin user add-test`): a doctor without 医籍番号, for `gateway check`.
    pub test_account: bool,
}

macro_rules! user_columns {
    () => {
        "id, clinic_id, login_id, kind, name, medical_reg_no, password_hash, enabled, created_at, password_temporary, password_set_at, test_account"
    };
}
use user_columns;

row! {
    /// A `users` row as `user_columns!` selects it.
    pub(super) struct UserRow {
        pub(super) id: String,
        pub(super) clinic_id: String,
        pub(super) login_id: String,
        pub(super) kind: String,
        pub(super) name: String,
        pub(super) medical_reg_no: Option<String>,
        pub(super) password_hash: String,
        pub(super) enabled: bool,
        pub(super) created_at: i64,
        pub(super) password_temporary: bool,
        pub(super) password_set_at: i64,
        pub(super) test_account: bool,
    }
}

/// A user account.
#[derive(Clone, serde::Serialize)]
pub struct User {
    /// UUID.
    pub id: String,
    /// Clinic.
    pub clinic_id: String,
    /// Login ID.
    pub login_id: String,
    /// Type.
    pub kind: UserKind,
    /// Name.
    pub name: String,
    /// 医籍番号.
    pub medical_reg_no: Option<String>,
    /// argon2id PHC string; never printed.
    #[serde(skip)]
    pub password_hash: String,
    /// Disabled users cannot log in.
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// The password was set by an operator: the user chooses a new one at the next login.
    pub password_temporary: bool,
    /// When the password was last set (Unix seconds): a temporary one expires
    /// `login.temporary_password_secs` later.
    pub password_set_at: i64,
    /// A test account (docs/design.md §3.10): never a real doctor's; its tokens say so.
    pub test_account: bool,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("id", &self.id).field("clinic_id", &self.clinic_id).finish_non_exhaustive()
    }
}

impl TryFrom<UserRow> for User {
    type Error = Error;
    fn try_from(r: UserRow) -> Result<Self> {
        Ok(Self {
            kind: r.kind.parse().map_err(|_| corrupt("users.kind"))?,
            id: r.id,
            clinic_id: r.clinic_id,
            login_id: r.login_id,
            name: r.name,
            medical_reg_no: r.medical_reg_no,
            password_hash: r.password_hash,
            enabled: r.enabled,
            created_at: r.created_at,
            password_temporary: r.password_temporary,
            password_set_at: r.password_set_at,
            test_account: r.test_account,
        })
    }
}
