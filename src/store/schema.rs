//! The Diesel schema, portable across SQLite and PostgreSQL (same SQL types on both).

diesel::table! {
    clients (client_id) {
        client_id -> Text,
        name -> Text,
        secret_hash -> Text,
        grant_types -> Text,
        resources -> Text,
        scopes -> Text,
        enabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        previous_secret_hash -> Nullable<Text>,
        previous_secret_expires_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    store_state (id) {
        id -> Integer,
        generation -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(clients, store_state);
