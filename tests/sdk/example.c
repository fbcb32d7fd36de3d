/*
 * example.c - a device program against the installed SDK only (sealpipe.h,
 * pkg-config sealpipe): builds a TagoTiP body, seals it into a TagoTiP/S
 * envelope with a key derived as TagoIO's device SDK examples do, opens it
 * again and prints the envelope in hex, then the library's version (which
 * must be the header's). Built and run by tests/sdk/install.sh
 * after `cmake --install`, so the header, library and .pc file are checked
 * the way a device project uses them.
 */
#include <sealpipe.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
    static const char token[] = "ate2bd319014b24e0a8aca9f00aea4c0d0", serial[] = "sensor-01";
    uint8_t key[16], ah[SP_HASH_LEN], dh[SP_HASH_LEN], env[SP_ENV_MAX_LEN], back[SP_MAX_FRAME];
    char body[256], inner[300], hex[2 * sizeof env + 1];
    struct sp_tip_builder b;
    struct sp_env_header h;
    size_t len, env_len, back_len;

    if (strcmp(sp_version(), SP_VERSION_STRING) != 0)
        return 4;
    if (sp_init() != SP_OK || sp_auth_hash(token, strlen(token), ah) != SP_OK ||
        sp_derive_key(token, strlen(token), serial, strlen(serial), key, sizeof key) != SP_OK)
        return 1;
    sp_device_hash(serial, strlen(serial), dh);
    sp_tip_build_init(&b, body, sizeof body);
    sp_tip_body_time(&b, 1694567890000);
    sp_tip_add_number(&b, "temperature", 21.5, "C");
    sp_tip_add_location(&b, "position", 39.74, -104.99, 0, 0);
    sp_tip_var_meta(&b, "source", "gps");
    if (sp_tip_build_end(&b, &len) != SP_OK)
        return 2;
    len = (size_t)snprintf(inner, sizeof inner, "%s|%s", serial, body);
    if (sp_env_seal(SP_SUITE_AES128_CCM, SP_METHOD_PUSH, 1, ah, dh, key, sizeof key,
                    (const uint8_t *)inner, len, env, sizeof env, &env_len) != SP_OK ||
        sp_env_parse_header(env, env_len, &h) != SP_OK ||
        sp_env_open(&h, env, env_len, key, sizeof key, back, sizeof back, &back_len) != SP_OK ||
        back_len != len || memcmp(back, inner, len) != 0 ||
        sp_hex_encode(env, env_len, hex, sizeof hex) != SP_OK)
        return 3;
    printf("%s\n%s\n%s\n", body, hex, sp_version());
    return 0;
}
