package pixel

// The script's text, in pieces that Snippet assembles for the configured platforms. It is ES5 so it
// runs wherever the vendors' own code runs, reads every value from the JSON literal c passed in at
// the end, and contains neither "</" nor "<!--", so nothing in it changes how HTML parses the
// script element.

// jsHead opens the function and makes a second copy of the snippet in one page a no-op.
const jsHead = `(function(w,d,c){
if(w.capi&&w.capi.track)return;
function has(o,k){return !!o&&Object.prototype.hasOwnProperty.call(o,k);}
`

// jsMeta is Meta's Pixel base code as Meta publishes it (it returns early when fbq exists, so the
// library never loads twice), then init and PageView unless the page's own base code already
// initialized this pixel: fbq.getState() once the library has loaded, the stub's queue before.
// dataProcessingOptions precedes init so LDU covers the PageView. Meta's standard events go through
// track, anything else through trackCustom, which is what Meta expects for custom names.
const jsMeta = `!function(f,b,e,v,n,t,s){if(f.fbq)return;n=f.fbq=function(){n.callMethod?
n.callMethod.apply(n,arguments):n.queue.push(arguments)};if(!f._fbq)f._fbq=n;
n.push=n;n.loaded=!0;n.version='2.0';n.queue=[];t=b.createElement(e);t.async=!0;
t.src=v;s=b.getElementsByTagName(e)[0];s.parentNode.insertBefore(t,s)}(w,d,'script',
'` + metaScriptURL + `');
function fbInitialized(id){var f=w.fbq,p,q,i;
try{p=f.getState&&f.getState().pixels;for(i=0;p&&i<p.length;i++)if(String(p[i].id)===id)return true;}catch(e){}
q=f.queue||[];for(i=0;i<q.length;i++)if(q[i]&&q[i][0]==='init'&&String(q[i][1])===id)return true;
return false;}
var fbStandard={AddPaymentInfo:1,AddToCart:1,AddToWishlist:1,CompleteRegistration:1,Contact:1,CustomizeProduct:1,Donate:1,FindLocation:1,InitiateCheckout:1,Lead:1,PageView:1,Purchase:1,Schedule:1,Search:1,StartTrial:1,SubmitApplication:1,Subscribe:1,ViewContent:1};
if(c.ldu)w.fbq('dataProcessingOptions',['LDU'],0,0);
if(!fbInitialized(c.meta.pixel)){
w.fbq('init',c.meta.pixel,c.externalId?{external_id:c.externalId}:{});
w.fbq('track','PageView',{},{eventID:c.eventId});
}
`

// jsTikTok is TikTok's base code stub as TikTok publishes it, run only when ttq is absent: re-run
// over a loaded library it would replace the library's methods with queueing ones. load and page
// are skipped when the page already loaded this pixel code.
//
// ttq.page() takes no event ID (its signature beyond no arguments is unconfirmed, spec A4/A5), so
// the browser PageView carries none; TikTok then deduplicates a server Pageview against it by _ttp
// and external_id, its documented fallback. We do not fire an extra ttq.track('Pageview', …) with the
// ID: whether TikTok treats that as the page view or as a second, custom event is unconfirmed, and
// counting page views twice is the worse failure.
//
// identify's external_id is the SHA-256 hex of the visitor ID, the value the Events API receives;
// TikTok documents identify with hashed values.
const jsTikTok = `if(!w.ttq){
!function (w, d, t) {
w.TiktokAnalyticsObject=t;var ttq=w[t]=w[t]||[];ttq.methods=["page","track","identify","instances","debug","on","off","once","ready","alias","group","enableCookie","disableCookie","holdConsent","revokeConsent","grantConsent"],ttq.setAndDefer=function(t,e){t[e]=function(){t.push([e].concat(Array.prototype.slice.call(arguments,0)))}};for(var i=0;i<ttq.methods.length;i++)ttq.setAndDefer(ttq,ttq.methods[i]);ttq.instance=function(t){for(var e=ttq._i[t]||[],n=0;n<ttq.methods.length;n++)ttq.setAndDefer(e,ttq.methods[n]);return e},ttq.load=function(e,n){var r="` + tiktokScriptURL + `",o=n&&n.partner;ttq._i=ttq._i||{},ttq._i[e]=[],ttq._i[e]._u=r,ttq._t=ttq._t||{},ttq._t[e]=+new Date,ttq._o=ttq._o||{},ttq._o[e]=n||{};n=document.createElement("script");n.type="text/javascript",n.async=!0,n.src=r+"?sdkid="+e+"&lib="+t;e=document.getElementsByTagName("script")[0];e.parentNode.insertBefore(n,e)};
}(w, d, 'ttq');
}
var ttNew=!(w.ttq._i&&has(w.ttq._i,c.tiktok.code));
if(ttNew)w.ttq.load(c.tiktok.code,{limited_data_use:!!c.ldu});
if(c.externalId)w.ttq.identify({external_id:c.externalId});
if(ttNew)w.ttq.page();
`

// jsGoogle is the Google tag: Google's snippet is an async <script src> plus dataLayer and gtag;
// we create the same script element from here so the whole snippet stays one element. The library
// is not loaded twice for one tag ID, and js and config are not repeated when the page's own tag
// already sent them. Limited data use denies ad_user_data (DESIGN §9): as a default before our
// config, as an update when the page configured the tag first.
const jsGoogle = `w.dataLayer=w.dataLayer||[];
if(!w.gtag)w.gtag=function(){w.dataLayer.push(arguments);};
(function(id){var u='` + googleScriptURL + `?id='+encodeURIComponent(id),s=d.getElementsByTagName('script'),l=w.dataLayer,js=false,cf=false,i,t;
for(i=0;i<s.length;i++)if(s[i].src===u)u='';
if(u){t=d.createElement('script');t.async=true;t.src=u;(d.head||d.documentElement).appendChild(t);}
for(i=0;i<l.length;i++){if(l[i]&&l[i][0]==='js')js=true;if(l[i]&&l[i][0]==='config'&&l[i][1]===id)cf=true;}
if(c.ldu)w.gtag('consent',cf?'update':'default',{ad_user_data:'denied'});
if(!js)w.gtag('js',new Date());
if(!cf)w.gtag('config',id);
})(c.google.id);
`

// jsFire opens fire(name, id, data), which sends one event to every configured pixel with one event
// ID. data uses Meta's custom_data names (value, currency, content_ids, order_id, …).
const jsFire = `function copy(o){var r={},k;for(k in o)if(has(o,k))r[k]=o[k];return r;}
function fire(name,id,data){
data=data&&typeof data==='object'?data:{};
`

const jsFireMeta = `if(w.fbq){var m=copy(data);if(m.content_ids&&!m.content_type)m.content_type='product';
w.fbq(has(fbStandard,name)?'track':'trackCustom',name,m,{eventID:id});}
`

// jsFireTikTok turns content_ids into TikTok's contents, the shape Events API 2.0 documents.
const jsFireTikTok = `if(w.ttq){var t=copy(data),ids=t.content_ids,i;
if(ids instanceof Array&&!t.contents){t.contents=[];for(i=0;i<ids.length;i++)t.contents.push({content_id:String(ids[i])});}
delete t.content_ids;if(t.contents&&!t.content_type)t.content_type='product';
w.ttq.track(has(c.tiktok.names,name)?c.tiktok.names[name]:name,t,{event_id:id});}
`

// jsFireGoogle fires a conversion only for names with a configured label, and never sends an empty
// transaction_id (Google would deduplicate every such conversion against each other).
const jsFireGoogle = `if(w.gtag&&has(c.google.labels,name)){var g={send_to:c.google.id+'/'+c.google.labels[name]};
if(data.value!=null)g.value=data.value;if(data.currency)g.currency=data.currency;
if(data.order_id)g.transaction_id=String(data.order_id);
w.gtag('event','conversion',g);}
`

// jsTail closes fire, fires the page's conversions and defines window.capi. track's event IDs are
// 32 lowercase hex characters from crypto.getRandomValues. The POST is same-origin with keepalive,
// so a track call just before navigating away still reaches the collect endpoint.
const jsTail = `}
function newId(){var b=new Uint8Array(16),s='',i;w.crypto.getRandomValues(b);for(i=0;i<b.length;i++)s+=(b[i]<16?'0':'')+b[i].toString(16);return s;}
function send(name,id,data){if(!c.collect||!w.fetch)return;
try{w.fetch(c.collect,{method:'POST',headers:{'Content-Type':'application/json'},credentials:'same-origin',keepalive:true,
body:JSON.stringify({name:name,event_id:id,data:data||{},url:w.location.href,referrer:d.referrer})})['catch'](function(){});}catch(e){}}
for(var k=0;c.conversions&&k<c.conversions.length;k++)fire(c.conversions[k].name,c.conversions[k].eventId,c.conversions[k].data);
w.capi={eventId:c.eventId,track:function(name,data){if(typeof name!=='string'||!name)return '';var id=newId();fire(name,id,data);send(name,id,data);return id;}};
})(window,document,`
