#!/usr/bin/env python3
"""Writes the committed seed corpora (seeds/<target>/) from the hostile inputs of SECURITY.md section 2.

Run from fuzz/: python3 make_seeds.py
"""
import os, base64, json
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b'=').decode()
def w(target, name, data):
    d=f'seeds/{target}'; os.makedirs(d, exist_ok=True)
    if isinstance(data,str): data=data.encode()
    open(f'{d}/{name}','wb').write(data)

# cookie_header (§2 #13)
tok=b64(bytes(range(32)))
for n,v in {
 'well_formed_never_issued': 'authx_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
 'issued_shape': f'a=1; authx_session={tok}; b=2',
 'duplicate_same_header': f'authx_session={tok}; authx_session={tok}',
 'duplicate_host_prefix_two_headers': f'__Host-authx_session={tok}\n__Host-authx_session={tok}',
 'huge_10k': 'authx_session='+'A'*10000,
 'nul_byte': 'authx_session=AAAA\x00AAAA',
 'non_base64': 'authx_session=not base64 at all!!',
 'padded_base64': 'authx_session='+tok[:42]+'=',
 'quoted': f'authx_session="{tok}"',
 'empty_pairs': '=;=;;;',
 'no_value': 'authx_session',
 'tossed_parent_domain': f'authx_session={tok}; Domain=.example.com; authx_csrf={tok}',
 'huge_max_age': 'authx_session=x; Max-Age=99999999999999999999999',
 'non_canonical_last_char': 'authx_session='+tok[:42]+'B',
}.items(): w('cookie_header', n, v)

# oauth_form: body 0xff query 0xff authorization 0xff content-type  (§2 #8, #9, #17, #19)
FF=b'\xff'
ver='dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'
def form(body, query=None, auth=None, ct=None):
    out=body.encode()
    rest=[query, auth, ct]
    while rest and rest[-1] is None: rest.pop()
    for p in rest:
        out+=FF+(p or '').encode()
    return out
basic=lambda b: 'Basic '+base64.b64encode(b).decode()
for n,v in {
 'code_grant': form(f'grant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&client_id=app&code_verifier={ver}'),
 'duplicate_code': form('grant_type=authorization_code&code=a&code=b&client_id=app'),
 'duplicate_redirect_uri': form('redirect_uri=https%3A%2F%2Fa&redirect_uri=https%3A%2F%2Fb&client_id=app'),
 'empty_values': form('code=&client_id=app&client_secret=&grant_type='),
 'secret_in_query': form('grant_type=client_credentials&client_id=app', 'client_secret=s'),
 'assertion_in_query': form('client_id=app', 'client_assertion=eyJ'),
 'duplicate_query_vs_body': form('code=a&client_id=app', 'code=b'),
 'basic_and_body_secret': form('client_id=app&client_secret=s', '', basic(b'app:s')),
 'basic_other_client_id': form('client_id=other', '', basic(b'app:s')),
 'basic_unencoded_colon': form('grant_type=client_credentials', '', basic(b'a:b:c')),
 'basic_bad_percent': form('grant_type=client_credentials', '', basic(b'a%zz:b%')),
 'basic_not_base64': form('grant_type=client_credentials', '', 'Basic !!!'),
 'bearer_not_basic': form('client_id=app', '', 'Bearer abc'),
 'json_body': form('{"client_id":"app"}', '', None, 'application/json'),
 'text_plain': form('client_id=app', '', None, 'text/plain'),
 'form_with_charset': form('client_id=app', '', None, 'Application/X-WWW-Form-Urlencoded; charset=utf-8'),
 'huge_scope': form('client_id=app&scope='+'a'*5000),
 'long_name': form('x'*100+'=1&client_id=app'),
 'sql_and_crlf': form("client_id=%27+OR+1%3D1--&scope=openid%0d%0aFAKE&state=%0d%0aSet-Cookie%3A+x&nonce=%22%3B+DROP+TABLE+users%3B--&login_hint=%24ne"),
 'user_code_lookalike': form('client_id=app&user_code=%D0%92CDF-GHJK'),
 'verifier_42': form('client_id=app&code_verifier='+'a'*42),
 'verifier_129': form('client_id=app&code_verifier='+'a'*129),
 'verifier_plus_slash_eq': form('client_id=app&code_verifier='+'a'*40+'%2B%2F%3D'),
 'invalid_utf8': b'client_id=%FF%FE&scope=\xc3\x28',
}.items(): w('oauth_form', n, v)

# redirect_uri: registered \n presented  (§2 #7)
R='https://app.example.com/cb'
for i,p in enumerate([
 R, R+'/../evil', R+'/%2e%2e/evil', R+'/%252e%252e/evil', R+'/..;/evil', 'https://app.example.com\\cb',
 'https://app.example.com\\@evil.example/cb', 'https://app.example.com@evil.example/cb', 'https://a@b@evil.example/cb',
 'HTTPS://app.example.com/cb', 'https://APP.example.com/cb', R+'/', R+'?x=1', R+'#frag', 'http://app.example.com/cb',
 'https://\u0430pp.example.com/cb', 'https://app.example.com.evil.example/cb', 'https://app.example.com:443/cb',
 'JaVaScRiPt:alert(1)', 'DaTa:text/html,x', 'https://xn--pp-8kc.example.com/cb',
]): w('redirect_uri', f'variant_{i:02}', R+'\n'+p)
w('redirect_uri','reordered_query', 'https://app.example.com/cb?b=2&a=1\nhttps://app.example.com/cb?a=1&b=2')
for i,(r,p) in enumerate([
 ('http://127.0.0.1/cb','http://127.0.0.1:51234/cb'),
 ('http://127.0.0.1/cb','http://localhost:51234/cb'),
 ('http://localhost/cb','http://localhosts/cb'),
 ('http://127.0.0.1/cb','http://[::1]:5000/cb'),
 ('http://[::1]/cb','http://[::1]:5000/cb'),
 ('http://127.0.0.1/cb','http://127.0.0.1:51234@evil.example/cb'),
 ('http://127.0.0.1/cb','http://127.0.0.1:51234/cb?x'),
 ('http://127.0.0.1:8080/cb','http://127.0.0.1:/cb'),
 ('http://[::1]x/cb','http://[::1]:1/cb'),
 ('vbscript://x','vbscript://x'),
 ('https://*.example.com/cb','https://a.example.com/cb'),
 ('https:///cb','https:///cb'),
]): w('redirect_uri', f'loopback_{i:02}', r+'\n'+p)

# jwt_verify: 0x00 token | 0x01 alg-pick header 0xff claims   (§2 #1-#5)
def e(o): return b64(json.dumps(o,separators=(',',':')).encode())
now=1700000000
claims={"iss":"https://id.example.com","sub":"u1","aud":"https://api.example.com","exp":now+900,"iat":now,"jti":"j1","client_id":"app","scope":"read"}
P=e(claims)
def t(h, sig=b''): return e(h)+'.'+P+'.'+b64(sig)
toks={
 'alg_none': t({"alg":"none","typ":"at+jwt","kid":"k"}),
 'alg_None': t({"alg":"None","typ":"at+jwt","kid":"k"}),
 'alg_nOnE': t({"alg":"nOnE","typ":"at+jwt","kid":"k"}),
 'hs256': t({"alg":"HS256","typ":"at+jwt","kid":"k"}, b'\x00'*32),
 'es256_zero_sig': t({"alg":"ES256","typ":"at+jwt","kid":"k"}, b'\x00'*64),
 'es256_der_sig': t({"alg":"ES256","typ":"at+jwt","kid":"k"}, bytes([0x30,6,2,1,1,2,1,1])),
 'header_jwk': t({"alg":"ES256","typ":"at+jwt","jwk":{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}}, b'\x01'*64),
 'header_jku_x5u_x5c': t({"alg":"RS256","typ":"at+jwt","jku":"https://evil.example/jwks","x5u":"https://evil.example/c","x5c":["MIIB"]}, b'\x01'*256),
 'kid_path': t({"alg":"ES256","typ":"at+jwt","kid":"../../dev/null"}, b'\x01'*64),
 'kid_sql': t({"alg":"ES256","typ":"at+jwt","kid":"' OR 1=1--"}, b'\x01'*64),
 'kid_url': t({"alg":"ES256","typ":"at+jwt","kid":"https://evil.example/key"}, b'\x01'*64),
 'kid_10k': t({"alg":"ES256","typ":"at+jwt","kid":"k"*10000}),
 'json_serialization': json.dumps({"payload":P,"protected":e({"alg":"ES256"}),"signature":"AA"}),
 'jwe_five_parts': e({"alg":"PBES2-HS256+A128KW","enc":"A128GCM","p2c":2147483647,"p2s":"AA"})+'.AA.AA.AA.AA',
 'two_segments': e({"alg":"ES256","typ":"at+jwt"})+'.'+P,
 'invalid_utf8_header': b64(b'{"alg":"\xff"}')+'.'+P+'.AA',
}
for n,tk in toks.items(): w('jwt_verify', 'presented_'+n, b'\x00'+tk.encode())
H=lambda alg, **kw: json.dumps(dict({"alg":alg,"typ":"at+jwt","kid":"$kid"},**kw),separators=(',',':')).encode()
C=lambda **kw: json.dumps(dict(claims,**kw),separators=(',',':')).encode()
signed={
 'es256_good': (0, H('ES256'), C()),
 'eddsa_good': (1, H('EdDSA'), C()),
 'rs256_good': (2, H('RS256'), C()),
 'typ_jwt_id_token': (0, H('ES256',typ='JWT'), C()),
 'typ_upper': (0, H('ES256',typ='AT+JWT'), C()),
 'alg_mismatch': (1, H('ES256'), C()),
 'hs256_header_on_es_key': (0, H('HS256'), C()),
 'exp_string': (0, H('ES256'), C(exp=str(now+900))),
 'nbf_string': (0, H('ES256'), C(nbf=str(now))),
 'aud_empty_array': (0, H('ES256'), C(aud=[])),
 'aud_array_empty_string': (0, H('ES256'), C(aud=[""])),
 'aud_nested': (0, H('ES256'), C(aud=[["https://api.example.com"]])),
 'expired': (0, H('ES256'), C(exp=now-3600)),
 'issued_in_future': (0, H('ES256'), C(iat=now+3600)),
 'other_issuer': (0, H('ES256'), C(iss='https://evil.example')),
 'unknown_claim': (0, H('ES256'), C(admin=True)),
 'jwk_in_header': (0, H('ES256',jwk={"kty":"EC"}), C()),
 'exp_i64_max': (0, H('ES256'), C(exp=2**63-1)),
 'iat_i64_min': (0, H('ES256'), C(iat=-2**63)),
 'exp_i64_min': (1, H('EdDSA'), C(exp=-2**63)),
}
for n,(a,h,c) in signed.items(): w('jwt_verify', 'signed_'+n, b'\x01'+bytes([a])+h+b'\xff'+c)
dup=b'{"iss":"https://evil.example","iss":"https://id.example.com","sub":"u","aud":"a","exp":%d,"iat":%d,"jti":"j","client_id":"c"}'%(now+900,now)
w('jwt_verify','signed_duplicate_keys', b'\x01\x00'+H('ES256')+b'\xff'+dup)
w('jwt_verify','signed_invalid_utf8_claims', b'\x01\x00'+H('ES256')+b'\xff'+b'{"iss":"\xff"}')

# user_code (§2 #12, #17)
for i,s in enumerate(['bcdf-ghjk','BCDFGHJK',' bcdf ghjk ','b-c-d-f-g-h-j-k','\u0412\u0421DF-GHJK','\uff22CDF-GHJK','BCDF-GHJ\u212a',
    "BCDF-GHJK' OR 1=1--",'BCDF\r\nGHJK','BCDF_GHJK','ABCD-GHJK','-'*64,'bcdf-ghjk\u0000','BCDF-GHJ\u0130']):
    w('user_code', f'typed_{i:02}', s)

# pkce: verifier \n challenge  (§2 #9)
ch='E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'
for n,v in {
 'rfc7636_example': ver+'\n'+ch,
 'verifier_equals_challenge': ch+'\n'+ch,
 'plain_method_shape': ver+'\n'+ver,
 'len_42': 'a'*42+'\n'+ch,
 'len_129': 'a'*129+'\n'+ch,
 'len_128': 'a'*128+'\n'+ch,
 'plus_slash_eq': 'a'*40+'+/='+'\n'+ch,
 'space': 'a'*42+' '+'\n'+ch,
 'challenge_padded': ver+'\n'+ch+'=',
 'challenge_standard_b64': ver+'\n'+ch.replace('-','+'),
 'unicode': '\u00e9'*43+'\n'+ch,
}.items(): w('pkce', n, v)

# email (§2 #15, #17)
for i,s in enumerate(['kate@example.com','Kate@Example.COM','  kate@example.com ','\u212aate@example.com',
  '\uff4b\uff41\uff54\uff45@example.com','re\u0301my@example.com','r\u00e9my@example.com','a\u200b@example.com',
  'a\r\nFAKE@example.com','a\u0000@example.com',"' OR 1=1--@example.com",'a@example..com','STRASSE@example.com',
  'stra\u00dfe@example.com','\u0130stanbul@example.com','a@b@example.com','"a b"@example.com','@','\ufb03@example.com']):
    w('email', f'addr_{i:02}', s)
