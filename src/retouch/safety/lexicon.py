"""The prompt lexicon: what `retouch.safety.prompt` looks for, as data.

Each `Entry` is a pattern in a small syntax, a category and a severity:

- `(a|b|c)` is one of several alternatives; an empty alternative, `(the |)`, makes a part
  optional; `{name}` is one of the words in `GROUPS[name]`. A pattern expands to every
  combination; extra spaces are dropped.
- English patterns are lower-case words of `a-z0-9` separated by spaces; they match whole
  words of the prompt (see `prompt.py` for the views they are matched in).
- Chinese patterns are written in Simplified characters, without spaces; the prompt is
  folded from Traditional to Simplified (`T2S`) before matching, so one entry covers both.
  A Chinese pattern may include ASCII letters or digits (`av女优`, `18禁`).
- `before` / `after` list benign contexts: an English match directly preceded (followed)
  by one of these words, or a Chinese match directly preceded (followed) by one of these
  strings, does not count ("nude lipstick", "pussy willow", 黑色情人节, 杀人鲸).
- `sexualizing` (sexual entries): whether the term sexualises the subject. Every explicit and
  extreme sexual term does; of the mild ones, clothing (bikini, 泳装) and ambiguous words do
  not, so "a kid in a swimsuit" is not read as sexual content involving a minor.
- `marker` (minors entries): a marker is not a finding by itself; it says a minor is in
  the picture. `strong` (child, kid, teen, 小孩, 萝莉, an age under 18) combines with any
  sexualising sexual term, `weak` ("baby", also an endearment) only with explicit or
  extreme sexual terms, `near` ("cp", also "couple" in Chinese internet slang) only with a
  sexual term within three words of it. Minors entries without a marker are findings on
  their own.

How severities were assigned is described in `prompt.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from retouch.safety.levels import Category, Severity

Marker = Literal["", "strong", "weak", "near"]


@dataclass(frozen=True)
class Entry:
    pattern: str
    category: Category
    severity: Severity
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    sexualizing: bool = True
    marker: Marker = ""


SEXUAL: Final = Category.SEXUAL
MINORS: Final = Category.MINORS
VIOLENCE: Final = Category.VIOLENCE
HATE: Final = Category.HATE
SELF_HARM: Final = Category.SELF_HARM
ILLEGAL: Final = Category.ILLEGAL
MILD: Final = Severity.MILD
EXPLICIT: Final = Severity.EXPLICIT
EXTREME: Final = Severity.EXTREME


def _e(
    category: Category,
    severity: Severity,
    *patterns: str,
    before: str = "",
    after: str = "",
    sexualizing: bool = True,
    marker: Marker = "",
) -> tuple[Entry, ...]:
    return tuple(
        Entry(
            pattern,
            category,
            severity,
            tuple(before.split()),
            tuple(after.split()),
            sexualizing,
            marker,
        )
        for pattern in patterns
    )


GROUPS: Final[dict[str, tuple[str, ...]]] = {
    # People attacked as a group, in the hate patterns.
    "group": (
        "jews",
        "jew",
        "jewish people",
        "muslims",
        "muslim people",
        "blacks",
        "black people",
        "black men",
        "black women",
        "whites",
        "white people",
        "negroes",
        "gays",
        "gay people",
        "homosexuals",
        "lesbians",
        "trans people",
        "transgender people",
        "transgenders",
        "asians",
        "asian people",
        "chinese",
        "japanese",
        "koreans",
        "indians",
        "mexicans",
        "arabs",
        "africans",
        "immigrants",
        "refugees",
        "migrants",
        "christians",
        "catholics",
        "hindus",
        "sikhs",
        "women",
        "gypsies",
        "roma",
        "latinos",
        "hispanics",
        "palestinians",
        "israelis",
        "mormons",
        "atheists",
        "americans",
        "russians",
        "ukrainians",
    ),
    "zgroup": (
        "黑人",
        "白人",
        "犹太人",
        "穆斯林",
        "回民",
        "同性恋",
        "基督徒",
        "亚洲人",
        "日本人",
        "中国人",
        "韩国人",
        "印度人",
        "阿拉伯人",
        "非洲人",
        "移民",
        "难民",
        "女人",
        "外国人",
        "维吾尔人",
        "藏人",
        "黑鬼",
    ),
    # Ages under 18, in digits and in words.
    "agenum": tuple(str(age) for age in range(1, 18)),
    "num": (
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
    ),
}

_NUDE_AFTER = (
    "colored coloured color colors colour colours tone toned tones tonal shade shades "
    "lipstick lipsticks lip lips gloss makeup palette palettes heel heels pump pumps shoe "
    "shoes sandal sandals nail nails polish beige pink peach brown blush eyeshadow "
    "manicure bra bras stockings tights hosiery mesh illusion undertone undertones"
)
# "a 10 year old photo": an age, but not a person's.
_OLD_THINGS = (
    "photo photos picture pictures image images photograph photographs painting paintings "
    "print prints scan scans film negative negatives house home building car truck tree "
    "wine whisky whiskey scotch dog dogs cat cats horse furniture table chair dress coat "
    "jacket shoes bag book poster sign logo brand company video"
)
_GUN_BEFORE = (
    "water toy nerf glue heat nail staple spray paint squirt bubble grease massage caulk "
    "caulking radar speed top ray laser starting start flare foam hot cap potato"
)
# 交 + these: 交流, 交通, 交易 … (个性交友, 路口交通, 女性交流 are not 性交 / 口交).
_JIAO_NEXT = (
    "流 往 通 易 友 换 给 互 叉 界 接 错 织 汇 集 付 谈 际 响 融 替 代 还 涉 战 锋 谊 到 差 会"
)

ENGLISH: Final[tuple[Entry, ...]] = (
    # --- sexual, mild: suggestive; swimwear and underwear.
    *_e(
        SEXUAL,
        MILD,
        "(sexy|sexier|sexiest|sexily)",
        "(seductive|seductively|seducing|seductress)",
        "(lingerie|panties|cleavage|busty|voluptuous)",
        "(fetish|fetishes|fetishistic)",
        "(ecchi|onlyfans|camgirl|camgirls|pinup)",
        "(lap dance|lapdance|lap dancer|lap dancing)",
        "(wet t shirt|wet tshirt)",
        "(prostitute|prostitutes|prostitution)",
    ),
    *_e(SEXUAL, MILD, "(stripper|strippers)", before="paint wire varnish wallpaper"),
    *_e(SEXUAL, MILD, "horny", after="toad toads lizard lizards beetle beetles coral"),
    *_e(SEXUAL, MILD, "kinky", after="hair curls curly twist twists coils"),
    *_e(SEXUAL, MILD, "(boobs|boobies)", before="footed"),
    *_e(SEXUAL, MILD, "(thong|thongs)", after="sandal sandals flip flops"),
    *_e(
        SEXUAL,
        MILD,
        "(bikini|bikinis|swimsuit|swimsuits|swimwear|underwear|bathing suit|bathing suits)",
        "(sensual|sensuous|sultry)",
        sexualizing=False,
    ),
    *_e(
        SEXUAL,
        MILD,
        "(breasts|buttocks)",
        before="chicken turkey duck goose quail",
        sexualizing=False,
    ),
    *_e(
        SEXUAL,
        MILD,
        "(cock|cocks)",
        before="weather turkey game",
        after="a crow crows crowing crowed",
        sexualizing=False,
    ),
    # --- sexual, explicit: nudity, sex acts, pornography.
    *_e(SEXUAL, EXPLICIT, "(nude|nudes)", after=_NUDE_AFTER),
    *_e(
        SEXUAL,
        EXPLICIT,
        "(naked|nakedness)",
        after="eye eyes flame flames cake cakes truth wire wires",
    ),
    *_e(
        SEXUAL,
        EXPLICIT,
        "bottomless",
        after="pit pits brunch brunches mimosa mimosas cup cups coffee drinks fries well abyss",
    ),
    *_e(SEXUAL, EXPLICIT, "(nipple|nipples)", before="bottle baby"),
    *_e(SEXUAL, EXPLICIT, "(pussy|pussies)", after="cat cats willow willows"),
    *_e(
        SEXUAL,
        EXPLICIT,
        "(tits|titties|titty)",
        before="blue great coal marsh willow crested tailed bearded",
    ),
    *_e(SEXUAL, EXPLICIT, "(cum|cums|cumming)", before="magna summa", after="laude"),
    *_e(SEXUAL, EXPLICIT, "anal", after="retentive"),
    *_e(SEXUAL, EXPLICIT, "(orgy|orgies)", after="of"),
    *_e(SEXUAL, EXPLICIT, "intercourse", before="social"),
    *_e(
        SEXUAL,
        EXPLICIT,
        "sex",
        before="opposite same biological",
        after="of ratio education ed chromosome chromosomes determination",
    ),
    *_e(
        SEXUAL,
        EXPLICIT,
        "porn",
        before="food earth cabin house room sky book ruin car architecture design gear map "
        "space city",
    ),
    *_e(
        SEXUAL,
        EXPLICIT,
        "(nudity|nudist|nudists|nudism|naturist|naturism|topless|unclothed)",
        "(undress|undressed|undressing|undresses|skinny dipping|skinnydipping)",
        "(birthday suit|wearing nothing but)",
        "(strip|undress|undressing|stripping) (her|him|the girl|the woman|the man)",
        "(remove|removing|take off|taking off|strip off|rip off) (her|his|their) "
        "(clothes|clothing|bra|panties|underwear|bikini|swimsuit|lingerie)",
        "(areola|areolas|areolae|genitals|genitalia|genital|penis|penises|vagina|vaginas)",
        "(vulva|clitoris|testicles|scrotum|labia|anus|cunt|cunts)",
        "(his|my|your|hard|erect) (dick|cock|penis)",
        "(dick pic|dick pics|dickpic|dickpics)",
        "(porno|pornos|porns|pornographic|pornography|pron|pornstar|pornstars|porn star)",
        "(porn stars|xxx video|xxx videos|sex tape|sex tapes|x rated|xrated)",
        "(hentai|ahegao|futanari|rule34|rule 34|nsfw|r18|r 18)",
        "(erotic|erotica|erotically|striptease|strip tease|cameltoe|camel toe)",
        "(having sex|have sex|has sex|had sex|sex scene|sex scenes|sex act|sex acts)",
        "(sex position|sex positions|sex toy|sex toys|sexual intercourse|sexual act)",
        "(sexual acts|sexually explicit|sexual content|making love|oral sex|anal sex)",
        "(blowjob|blowjobs|blow job|blow jobs|handjob|handjobs|hand job|footjob|rimjob)",
        "(fellatio|cunnilingus|deepthroat|deepthroating|cumshot|cumshots|creampie|bukkake)",
        "(gangbang|gang bang|threesome|masturbate|masturbates|masturbating|masturbation)",
        "(jerk off|jerking off|jacking off|orgasm|orgasms|orgasming|ejaculate|ejaculating)",
        "(ejaculation|semen|dildo|dildos|buttplug|butt plug|strapon|strap on|bdsm|bondage)",
        "(dominatrix|milf|milfs|slut|sluts|slutty|whore|whores)",
        "(spread legs|spreading legs|spread her legs|doggystyle|doggy style|nip slip|nipslip)",
    ),
    # --- sexual, extreme: sexual violence, non-consensual and abusive content.
    *_e(
        SEXUAL,
        EXTREME,
        "(rape|rapes)",
        before="oilseed",
        after="seed seeds field fields flower flowers oil plant plants blossom blossoms "
        "crop crops yellow",
    ),
    *_e(
        SEXUAL,
        EXTREME,
        "(raped|raping|rapist|rapists|gang rape|gangrape|gang raped|date rape|rape fantasy)",
        "(sexual assault|sexually assault|sexually assaulted|sexually assaulting)",
        "(sexual abuse|sexually abused|sexually abusing)",
        "(molest|molests|molested|molesting|molestation|molester|molesters)",
        "(incest|incestuous|bestiality|zoophilia|zoophile|necrophilia|necrophile)",
        "(non consensual|nonconsensual|noncon|forced sex|sex slave|sex slaves)",
        "(sexual slavery|snuff porn|revenge porn|deepfake porn|deepfake nude|deepfake nudes)",
        "(upskirt|upskirts|voyeur porn|hidden camera porn|drugged and raped)",
    ),
    # --- sexual content involving minors: findings on their own.
    *_e(
        MINORS,
        EXTREME,
        "(child porn|child pornography|childporn|kiddie porn|kiddy porn|kiddieporn)",
        "(kiddyporn|child sexual abuse|child sex abuse|child abuse material|csam|csem|pthc)",
        "(pedo|pedos|paedo|paedos|pedophile|pedophiles|paedophile|paedophiles)",
        "(pedophilia|paedophilia|pedophilic|lolicon|shotacon|jailbait|underage sex)",
        "(underage porn|teen porn|preteen sex|preteen porn|child nudity|nude child)",
        "(nude children|naked child|naked children|child erotica|child prostitute)",
        "(child prostitution|child sex trafficking)",
    ),
    # --- minors markers.
    *_e(
        MINORS,
        EXTREME,
        "(child|children|childs|childrens|kids|kiddie|kiddies|kiddo|kiddos)",
        "(teen|teens|teenage|teenaged|teenager|teenagers|preteen|preteens|pre teen)",
        "(pre teens|tween|tweens|underage|underaged|minors|loli|lolis|lolita|lolitas)",
        "(shota|shotas|toddler|toddlers|infant|infants|newborn|newborns|prepubescent)",
        "(pubescent|schoolgirl|schoolgirls|schoolboy|schoolboys|school girl|school girls)",
        "(school boy|school boys|little girl|little girls|little boy|little boys)",
        "(young girl|young girls|young boy|young boys|high schooler|high schoolers)",
        "(middle schooler|middle schoolers|grade schooler|kindergartener|kindergartner)",
        "(kindergarten|elementary school|primary school|middle school|junior high)",
        "({num}|{agenum}) (yo|y o)",
        "{agenum}yo",
        "(age|aged|ages) {agenum}",
        marker="strong",
    ),
    *_e(
        MINORS,
        EXTREME,
        "({num}|{agenum}) (year|years|yr|yrs) old",
        "{agenum}(yrs|yr) old",
        after=_OLD_THINGS,
        marker="strong",
    ),
    *_e(MINORS, EXTREME, "kid", after="gloves glove leather skin", marker="strong"),
    *_e(
        MINORS,
        EXTREME,
        "(baby|babies|babys)",
        before="sugar",
        after="blue pink doll dolls face faced oil powder breath grand back spinach carrot "
        "carrots corn shower bump boomer boomers hair hairs bangs tee tees shark shampoo",
        marker="weak",
    ),
    *_e(MINORS, EXTREME, "cp", marker="near"),
    # --- violence, mild: a fight, blood, a killing mentioned.
    *_e(
        VIOLENCE,
        MILD,
        "(fistfight|fist fight|fistfights|fist fighting|brawl|brawls|brawling)",
        "(bar fight|street fight|beat up|beating up|beaten up|beat him up|beat her up)",
        "(punch|punched|punching|kick|kicked|kicking) (him|her|them) in the (face|head)",
        "(murders|murdered|murderer|murderers|murdering|killed|slain)",
        "(stab|stabs|stabbed|stabbing|stabbings|strangle|strangled|strangling)",
        "(kill|killing|stab|strangle|strangling|choke|choking) (him|her|them|people)",
        "(kill|killing|stab|strangle) (someone|somebody|everyone|everybody)",
        "(kill|killing|stab|strangle) (the|a) (man|woman|boy|girl|guy|lady)",
        "(gunshot|gunshots|gunfire|shootout|shot dead|shot to death|gunned down)",
        "(bruises|bruised|black eye|bloody nose|open wound|wounded|wounds)",
        "(bloodstain|bloodstains|bloodstained|blood stained)",
    ),
    *_e(VIOLENCE, MILD, "(violence|violent|violently)", before="non anti"),
    *_e(VIOLENCE, MILD, "murder", after="of"),
    *_e(
        VIOLENCE,
        MILD,
        "blood",
        before="donate donating donated give giving",
        after="orange oranges moon type types pressure sugar donation donations donor donors "
        "bank cell cells test tests vessel vessels red drive bag brothers brother line lines",
    ),
    *_e(VIOLENCE, MILD, "(bloody|bloodied)", after="mary marys"),
    *_e(VIOLENCE, MILD, "bleeding", before="color colour ink", after="heart hearts edge"),
    # --- violence, explicit: gore, corpses, graphic injury.
    *_e(VIOLENCE, EXPLICIT, "(gore|gory)", before="al", after="tex"),
    *_e(VIOLENCE, EXPLICIT, "(corpse|corpses)", after="paint flower flowers"),
    *_e(
        VIOLENCE,
        EXPLICIT,
        "(goriness|gruesome|grisly|bloodbath|blood bath|blood splatter|blood spatter)",
        "(blood splattered|blood soaked|bloodsoaked|pool of blood|covered in blood)",
        "(soaked in blood|blood everywhere|dead body|dead bodies|decomposing body)",
        "(rotting corpse|entrails|guts spilling|spilled guts|exposed organs)",
        "(exposed intestines|severed limb|severed limbs|severed arm|severed leg|impaled)",
        "(impalement|massacre|massacred|slaughtered|bloodshed|gunshot wound)",
        "(gunshot wounds|bullet wound|bullet wounds|shot in the head|brains blown out)",
        "(blown to pieces|crushed skull|cannibal|cannibals|cannibalism|cannibalistic)",
        "(animal abuse|animal cruelty|child abuse|domestic violence|beaten to death)",
        "(beating to death|genocide|blood and guts)",
    ),
    # --- violence, extreme: torture, mutilation, mass killing, instructions to kill.
    *_e(
        VIOLENCE,
        EXTREME,
        "(torture|tortured|torturing|tortures|decapitate|decapitated|decapitation)",
        "(decapitating|behead|beheaded|beheading|beheadings|severed head|severed heads)",
        "cut off (his|her|their) (head|heads)",
        "(dismember|dismembered|dismembering|dismemberment|mutilate|mutilated|mutilating)",
        "(mutilation|disembowel|disemboweled|disembowelled|disembowelment|flayed|flaying)",
        "(skinned alive|burned alive|burnt alive|buried alive|eye gouging|gouged eyes)",
        "(gouged out|snuff film|snuff video|execution video|mass shooting|school shooting)",
        "(shooting spree|killing spree|mass murder|mass murderer|ethnic cleansing)",
        "(how to|ways to|best way to) (kill|murder|poison|strangle) "
        "(someone|somebody|a person|people|him|her|my wife|my husband)",
    ),
    # --- self-harm.
    *_e(
        SELF_HARM,
        MILD,
        "suicide",
        after="squad door doors bomber bombers bombing bombings vest vests attack attacks",
    ),
    *_e(SELF_HARM, MILD, "(suicidal|noose|nooses|overdose|overdosed|overdosing)"),
    *_e(
        SELF_HARM,
        EXPLICIT,
        "(self harm|selfharm|self harming|self injury|self injure|self injuring)",
        "(self mutilation|self mutilating|cutting myself|cut myself|cutting herself)",
        "(cutting himself|cut herself|cut himself|kill myself|killing myself)",
        "(kill himself|killed himself|kill herself|killed herself|killing himself)",
        "(killing herself|hang myself|hanging myself|hanged himself|hanged herself)",
        "(hanging himself|hanging herself|hang himself|hang herself|commit suicide)",
        "(committing suicide|committed suicide|commits suicide|suicide note|suicide attempt)",
        "(attempted suicide|end my life|ending my life|take my own life|taking my own life)",
        "(want to die|wrist cutting|pro ana|proana|pro mia|thinspo|thinspiration|bonespo)",
        "(slit|slitting|slashed|slash|cut|cutting) (my |her |his |their |)(wrist|wrists)",
    ),
    *_e(
        SELF_HARM,
        EXTREME,
        "(kill yourself|kys|go kill yourself|you should kill yourself|hang yourself)",
        "(slit your wrists|neck yourself|how to kill myself|how do i kill myself)",
        "(how to commit suicide|best way to kill myself|best way to die|painless suicide)",
        "(suicide method|suicide methods|suicide instructions|suicide guide)",
        "(how to self harm|how to cut myself)",
    ),
    # --- hate.
    *_e(HATE, MILD, "(nazi|nazis)", before="grammar soup"),
    *_e(
        HATE,
        MILD,
        "(hitler|swastika|swastikas|blackface|redskin|redskins|retard|retards)",
        "(white trash|hate symbol|hate symbols|hate speech|dyke|dykes)",
    ),
    *_e(HATE, EXPLICIT, "(chink|chinks)", after="in of"),
    *_e(HATE, EXPLICIT, "spic", after="and n"),
    *_e(HATE, EXPLICIT, "tranny", after="fluid"),
    *_e(
        HATE,
        EXPLICIT,
        "(nigger|niggers|nigga|niggas|niggaz|faggot|faggots|kike|kikes|spics)",
        "(wetback|wetbacks|gook|gooks|raghead|ragheads|towelhead|towelheads|sandnigger)",
        "(sand nigger|beaner|beaners|zipperhead|porch monkey|jungle bunny|trannies)",
        "(neo nazi|neonazi|neo nazis|neonazis|heil hitler|sieg heil|white power|white pride)",
        "(white supremacy|white supremacist|white supremacists|kkk|ku klux klan|1488)",
        "(14 words|fourteen words|blood and soil|master race|aryan race|aryan nation)",
        "(subhuman|subhumans|untermensch|race traitor|race war|holocaust denial)",
        "(holocaust hoax|holocaust was a hoax|holocaust never happened|racist caricature)",
        "(antisemitic caricature|lynching|lynchings|lynch mob)",
        "{group} (are|r|is) (vermin|animals|subhuman|parasites|rats|cockroaches|apes)",
        "{group} (are|r|is) (monkeys|filth|scum|inferior|savages|pigs|dogs|a disease)",
        "(i|we) (hate|despise) (all |)(the |){group}",
        "no {group} allowed",
    ),
    *_e(
        HATE,
        EXTREME,
        "(kill|exterminate|gas|murder|slaughter|lynch|massacre|eradicate|wipe out) "
        "(all |every |)(the |){group}",
        "(death to|destroy) (all |)(the |){group}",
        "{group} (must|should|deserve to|need to|have to) "
        "(die|be killed|be exterminated|be gassed|be eliminated|be wiped out)",
        "genocide (of|against) (the |){group}",
    ),
    # --- illegal: weapons, drugs, terrorism, trafficking, forgery.
    *_e(ILLEGAL, MILD, "(gun|guns)", before=_GUN_BEFORE, after="metal shy dog dogs"),
    *_e(ILLEGAL, MILD, "(pistol|pistols)", before="water squirt glue nerf toy spray"),
    *_e(
        ILLEGAL,
        MILD,
        "(bomb|bombs)",
        before="bath photo f calorie glitter seed smoke love cherry flavor flavour color "
        "colour stink cake da",
        after="pop pops cyclone",
    ),
    *_e(
        ILLEGAL,
        MILD,
        "drugs",
        before="prescription generic otc pharmacy",
    ),
    *_e(
        ILLEGAL,
        MILD,
        "(firearm|firearms|handgun|handguns|revolver|revolvers|rifle|rifles|shotgun)",
        "(shotguns|assault rifle|assault rifles|machine gun|machine guns|submachine gun)",
        "(ak47|ak 47|ar15|ar 15|m16|uzi|uzis|glock|glocks|ammo|ammunition)",
        "(grenade|grenades|explosives|dynamite|tnt)",
        "(marijuana|cannabis|weed joint|smoking weed|smoke weed|bong|bongs|opium|lsd)",
        "(shrooms|magic mushrooms|psychedelics|smuggling|smuggler|smugglers|contraband)",
        "(black market|terrorist|terrorists|terrorism|jihadi|jihadist|jihadists)",
        "(al qaeda|alqaeda|isis flag)",
    ),
    *_e(
        ILLEGAL,
        EXPLICIT,
        "(cocaine|heroin|meth|methamphetamine|crystal meth|crack cocaine|crack pipe)",
        "(fentanyl|ketamine|mdma|ecstasy pills|snorting cocaine|snort cocaine)",
        "(lines of cocaine|line of cocaine|drug dealer|drug dealers|drug dealing|drug deal)",
        "(drug lab|meth lab|molotov|molotovs|molotov cocktail|molotov cocktails|pipe bomb)",
        "(pipe bombs|ied|ieds|car bomb|car bombs|nail bomb|suicide bomber|suicide bombers)",
        "(suicide bombing|suicide bombings|suicide vest|explosive vest|terror attack)",
        "(terror attacks|terrorist attack|terrorist attacks|bomb threat|ghost gun|ghost guns)",
        "(3d printed gun|3d printed guns|untraceable gun|untraceable guns|hire a hitman)",
        "(contract killer|human trafficking|people smuggling|counterfeit money)",
        "(counterfeit bills|counterfeit banknotes|counterfeit currency|counterfeit cash)",
        "(fake banknotes|fake passport|fake passports|forged passport|forged passports)",
        "(fake id|fake ids|fake id card|fake driver license|fake drivers license)",
        "(fake driving licence|forged document|forged documents|forged signature)",
        "(forge a signature|forge signature|forge a passport|forge documents)",
        "(dirty bomb|nerve gas|nerve agent|sarin|ricin|bioweapon|bioweapons)",
        "(chemical weapon|chemical weapons)",
    ),
    *_e(
        ILLEGAL,
        EXTREME,
        "(how to |how do i |how can i |ways to |steps to |instructions to |)"
        "(make|build|assemble|cook|synthesize|manufacture) (a |an |)"
        "(bomb|bombs|pipe bomb|explosive|explosives|ied|molotov|meth|methamphetamine)",
        "(how to |how do i |how can i |ways to |steps to |instructions to |)"
        "(make|build|assemble|cook|synthesize|manufacture) (a |an |)"
        "(fentanyl|nerve gas|sarin|ricin|poison gas|bioweapon|dirty bomb|ghost gun)",
        "(sex trafficking|child trafficking|trafficking children|traffic children)",
        "(sell children|selling children|child slavery|child slaves)",
        "(plan a terrorist attack|planning a terrorist attack|plan a terror attack)",
        "(join isis|join al qaeda|behead infidels)",
    ),
)

CHINESE: Final[tuple[Entry, ...]] = (
    # --- sexual, mild.
    *_e(SEXUAL, MILD, "性感", before="中 知 理 母 弹 韧 线 感", after="觉 受 知 情 染 性"),
    *_e(SEXUAL, MILD, "(情趣内衣|性感内衣|透视装|乳沟|巨乳|爆乳|风骚|丁字裤|色诱|挑逗)"),
    *_e(SEXUAL, MILD, "(比基尼|泳装|泳衣|三点式)", sexualizing=False),
    *_e(
        SEXUAL,
        MILD,
        "内衣",
        before="室 屋 车 国 城 市 区 境 舱 院 厅 房",
        after="柜 帽 架 钩 橱",
        sexualizing=False,
    ),
    # --- sexual, explicit.
    *_e(SEXUAL, EXPLICIT, "色情", after="侣 人 绪 况 景 调 感 节 怀 谊 境 形 意 愫 书 歌 话 商 操"),
    *_e(SEXUAL, EXPLICIT, "(性交|口交|兽交)", after=_JIAO_NEXT),
    *_e(SEXUAL, EXPLICIT, "做爱", after="心 国 护 好 情 惜"),
    *_e(
        SEXUAL,
        EXPLICIT,
        "性爱",
        before="女 男 天 本 理 感 特 习 惯 耐 母 野 灵 品 属 弹 韧 知 线",
        after="好 护 惜 心 国",
    ),
    *_e(SEXUAL, EXPLICIT, "阴道", before="树 林 绿 柳 荫", after="路"),
    *_e(SEXUAL, EXPLICIT, "阴部", before="光 树", after="分 队 门 落 位"),
    *_e(SEXUAL, EXPLICIT, "全裸", before="完 安 健 齐 周 保 万 十"),
    *_e(SEXUAL, EXPLICIT, "赤裸", after="裸"),
    *_e(SEXUAL, EXPLICIT, "露点", after="温 仪 计 值 湿"),
    *_e(SEXUAL, EXPLICIT, "黄片", before="蛋 姜 硫 蜡 雄 大 地"),
    *_e(SEXUAL, EXPLICIT, "a片", after="段 刻 区 场"),
    *_e(
        SEXUAL,
        EXPLICIT,
        "(裸体|裸身|裸照|裸露身体|半裸|脱光|一丝不挂|裸聊)",
        "(成人片|成人影片|成人视频|成人电影|黄色视频|色情片|毛片|av女优|18禁|h漫|无码)",
        "(肛交|自慰|手淫|阴茎|阴唇|阴蒂|乳头|奶头|生殖器|睾丸|鸡巴|淫秽|淫荡|淫乱)",
        "(性器官|裸奔|援交|约炮|射精|精液|潮吹|颜射|高潮脸|露逼|骚逼)",
        "(色情图片|色情照片|脱衣舞|艳照|春宫图)",
    ),
    # --- sexual, extreme.
    *_e(SEXUAL, EXTREME, "强暴", after="雨 风 雪 力 动 露 涨 晒"),
    *_e(SEXUAL, EXTREME, "性暴力", before="女 男 理 个"),
    *_e(
        SEXUAL,
        EXTREME,
        "(强奸|轮奸|迷奸|诱奸|奸杀|性侵|猥亵|乱伦|奸尸|性奴|恋尸)",
        "(偷拍裙底|裙底偷拍|偷拍裸照|偷窥裸体|换脸色情|复仇色情)",
    ),
    # --- minors: findings on their own.
    *_e(
        MINORS,
        EXTREME,
        "(儿童色情|儿童性侵|恋童|幼女色情|萝莉色情|未成年色情|儿童裸照|童妓|雏妓|幼交|炼铜癖)",
    ),
    # --- minors markers.
    *_e(
        MINORS,
        EXTREME,
        "(小孩|儿童|幼童|女童|男童|幼女|萝莉|正太|未成年|婴儿|幼儿|小朋友|小学生|初中生)",
        "(中学生|高中生|小女孩|小男孩|学生妹|童模|未满十八岁|未满18岁|18岁以下|十八岁以下|小萝莉)",
        "{agenum}(周|)岁",
        marker="strong",
    ),
    *_e(MINORS, EXTREME, "孩子", after="气", marker="strong"),
    # --- violence, mild.
    *_e(VIOLENCE, MILD, "杀人", after="鲸 游戏"),
    *_e(VIOLENCE, MILD, "鲜血", after="橙"),
    *_e(VIOLENCE, MILD, "(打架|斗殴|血迹|流血|谋杀|枪击|爆头|暴力|殴打|砍人|捅人)"),
    # --- violence, explicit.
    *_e(VIOLENCE, EXPLICIT, "血腥", after="玛丽"),
    *_e(
        VIOLENCE,
        EXPLICIT,
        "(尸体|死尸|屠杀|大屠杀|内脏外露|断肢|血肉模糊|砍杀|虐待|横尸|血流成河|尸横遍野)",
    ),
    # --- violence, extreme.
    *_e(
        VIOLENCE,
        EXTREME,
        "(碎尸|肢解|分尸|斩首|砍头|酷刑|虐杀|凌迟|开膛破肚|挖眼|尸块|活埋|剥皮抽筋)",
        "(校园枪击|大规模枪击|虐童|种族清洗|种族灭绝)",
        "(怎么|如何|怎样|教我)(杀人|杀死一个人|毒死人|下毒|杀死他|杀死她)",
    ),
    # --- self-harm.
    *_e(SELF_HARM, MILD, "轻生", before="年 减", after="活"),
    *_e(SELF_HARM, MILD, "(自杀|自尽|寻死|想自杀)"),
    *_e(SELF_HARM, EXPLICIT, "跳楼", after="价 机"),
    *_e(
        SELF_HARM,
        EXPLICIT,
        "上吊",
        after="灯 顶 柜 篮 床 桥 车 带 坠 兰 饰 牌 钟 扇 椅 环 杆 索 钩",
    ),
    *_e(SELF_HARM, EXPLICIT, "(自残|割腕|割脉|烧炭自杀|吞药自杀|自杀未遂|自我伤害)"),
    *_e(
        SELF_HARM,
        EXTREME,
        "(怎么|如何|怎样|教我|教你)(自杀|自尽|割腕|上吊|轻生)",
        "(自杀|自尽)(方法|教程|指南|攻略)",
        "你(去死|怎么不去死|快去死)",
        "(教唆自杀|无痛自杀)",
    ),
    # --- hate.
    *_e(HATE, MILD, "(基佬|娘炮|人妖|纳粹|希特勒|卐|日本鬼子)"),
    *_e(HATE, EXPLICIT, "支那", before="度"),
    *_e(
        HATE,
        EXPLICIT,
        "(黑鬼|尼哥|死基佬|新纳粹|白人至上|白人优越|劣等民族|劣等种族|三k党|3k党)",
        "{zgroup}(都|全都|全|)是(畜生|垃圾|劣等人|劣等|蟑螂|害虫|猴子|猪|狗|寄生虫|人渣|野蛮人)",
        "(我|我们)(恨|讨厌|憎恨)(所有|)(的|){zgroup}",
    ),
    *_e(
        HATE,
        EXTREME,
        "(杀光|杀死|杀掉|消灭|屠杀|灭绝|烧死|毒死)(所有|全部|)(的|){zgroup}",
        "{zgroup}(都|全都|全|)(该死|应该去死|去死|必须死|应该被杀)",
    ),
    # --- illegal.
    *_e(ILLEGAL, MILD, "大麻", after="烦 花 雀 将 辣 绳 布 纤 籽 袋"),
    *_e(
        ILLEGAL,
        MILD,
        "(手枪|步枪|冲锋枪|机关枪|枪支|狙击枪|炸弹|手榴弹|炸药|毒品|恐怖分子|恐怖主义|走私)",
    ),
    *_e(ILLEGAL, EXPLICIT, "吸毒", after="气"),
    *_e(ILLEGAL, EXPLICIT, "制毒", before="控 管 抑 遏 压 克 限 编 机 体"),
    *_e(
        ILLEGAL,
        EXPLICIT,
        "(可卡因|海洛因|冰毒|摇头丸|k粉|芬太尼|贩毒|恐怖袭击|自杀式袭击|人体炸弹|人口贩卖)",
        "(贩卖人口|性交易|卖淫|嫖娼|假钞|伪钞|伪造护照|假护照|假身份证|假身分证|伪造证件)",
        "(伪造签名|伪造文件|土制炸弹|燃烧弹|买卖枪支)",
    ),
    *_e(
        ILLEGAL,
        EXTREME,
        "(怎么|如何|怎样|教我|)(制作|制造|自制|组装)(炸弹|炸药|土炸弹|雷管|燃烧弹|冰毒|芬太尼)",
        "(怎么|如何|怎样|教我)(制毒|贩毒|买枪)",
        "(拐卖儿童|贩卖儿童|儿童买卖|强迫卖淫)",
    ),
)

ENTRIES: Final[tuple[Entry, ...]] = ENGLISH + CHINESE

# Traditional → Simplified, for the characters of the lexicon, of its benign contexts and
# of common words around them. Only characters that exist in Traditional text alone are
# keys, so folding never changes Simplified text.
_T2S_PAIRS: Final = (
    "體体 陰阴 莖茎 頭头 殺杀 屍尸 槍枪 鎗枪 彈弹 藥药 愛爱 黃黄 視视 頻频 兒儿 蘿萝 戀恋 "
    "強强 姦奸 輪轮 亂乱 倫伦 獸兽 褻亵 殘残 脈脉 樓楼 輕轻 盡尽 尋寻 販贩 賣卖 買买 鈔钞 "
    "護护 證证 偽伪 僞伪 製制 襲袭 擊击 鬥斗 毆殴 跡迹 蹟迹 鮮鲜 謀谋 斬斩 開开 臟脏 髒脏 "
    "斷断 園园 規规 種种 滅灭 絕绝 納纳 絲丝 掛挂 優优 碼码 圖图 穢秽 蕩荡 搖摇 機机 關关 "
    "衝冲 鋒锋 溝沟 誘诱 裝装 風风 騷骚 點点 學学 嬰婴 雛雏 內内 遲迟 塊块 戲戏 遊游 瑪玛 "
    "麗丽 黨党 猶犹 亞亚 韓韩 國国 難难 維维 爾尔 該该 應应 滾滚 蟲虫 豬猪 歲岁 週周 滿满 "
    "個个 樹树 紅红 顏颜 侶侣 節节 緒绪 況况 調调 懷怀 誼谊 書书 話话 溫温 儀仪 計计 櫃柜 "
    "車车 區区 艙舱 廳厅 門门 剝剥 傷伤 惡恶 裡里 裏里 衛卫 讓让 麼么 們们 對对 這这 張张 "
    "說说 將将 為为 專专 與与 產产 團团 態态 價价 燈灯 頂顶 籃篮 橋桥 帶带 墜坠 蘭兰 飾饰 "
    "鐘钟 鍾钟 環环 桿杆 繩绳 煩烦 纖纤 勞劳 軍军 組组 導导 燒烧 熱热 氣气 聯联 細细 結结 "
    "給给 換换 匯汇 彙汇 錯错 織织 際际 響响 談谈 運运 動动 讀读 寫写 雞鸡 鳥鸟 龍龙 馬马 "
    "魚鱼 處处 見见 現现 邊边 過过 還还 進进 題题 驗验 遠远 陽阳 隊队 壓压 貿贸 錢钱 銀银 "
    "畫画 廣广 場场 劇剧 電电 淨净 後后 發发 髮发 漢汉 壞坏 夠够 實实 經经 濟济 貓猫 歡欢 "
    "聲声 準准 總总 網网 頁页 創创 質质 飛飞 單单 員员 時时 間间 長长 東东 業业 來来 會会 "
    "從从 聽听 覺觉 號号 問问 簡简 紀纪 錄录 術术 藝艺 極极 讚赞 奮奋 塗涂 藍蓝 綠绿 讓让 "
    "麵面 幫帮 邊边 鏡镜 燈灯 嗎吗 變变 換换 裙裙 襯衬 衫衫 鞋鞋 雙双 條条 樣样 戶户 歷历 "
    "舊旧 筆笔 盤盘 擺摆 齊齐 萬万 癢痒 騙骗 閃闪 線线 紋纹 綁绑 縛缚 奪夺 詞词 語语 "
    "們们 誰谁 認认 識识 讀读 較较 輛辆 跑跑 燦灿 爛烂 漿浆 潔洁 鐵铁 鋼钢 銅铜 錶表 "
    "護护 膚肤 臉脸 貼贴 懸悬 寶宝 貝贝 陳陈 舉举 擁拥 擠挤 攝摄 濾滤 鏈链 靜静 暫暂 "
    "級级 類类 際际 隻只 撲扑 滅灭 擋挡 壞坏 竊窃 偵侦 鄰邻 槳桨 膠胶 雜杂 誌志 韌韧 "
    "屬属 靈灵 慣惯 習习 賴赖 彌弥 漸渐 緻致 葉叶 場场 鬆松 鬍胡 鬚须 龜龟 鹽盐 黴霉 "
    "鄉乡 墻墙 牆墙 磚砖 窗窗 簾帘 燭烛 鎖锁 鑰钥 匙匙 壺壶 碗碗 盞盏 餅饼 糖糖 膩腻 "
    "夢梦 檯台 臺台 颱台 灣湾 滬沪 廈厦 鷹鹰 鴨鸭 鵝鹅 鴿鸽 螢萤 蠟蜡 燭烛 觸触 覽览 "
    "瞭了 雲云 霧雾 雞鸡 凱凯 賽赛 權权 歐欧 傳传 統统 豐丰 淚泪 憂忧 勢势 衆众 眾众 "
    "邪邪 驚惊 嚇吓 懼惧 悅悦 愛爱 慾欲 嬌娇 媽妈 爺爷 孫孙 婦妇 姊姊 兇凶 槓杠 賤贱 "
    "狀状 態态 簽签 賬账 帳帐 賓宾 騎骑 驢驴 戰战 炮炮 砲炮 艦舰 彈弹 彥彦 閱阅 獎奖 "
    "門门 構构 築筑 準准 確确 顧顾 須须 題题 額额 願愿 頸颈 頰颊 顆颗 覆覆 圍围 團团 "
    "緊紧 繫系 係系 蹤踪 躍跃 蹺跷 邏逻 輯辑 轉转 輸输 辦办 遞递 遷迁 遺遗 郵邮 醫医 "
    "釋释 鍵键 鎮镇 閉闭 闖闯 隱隐 險险 雖虽 離离 靂雳 韻韵 頒颁 頑顽 頓顿 領领 "
    "飢饥 飲饮 飽饱 餓饿 館馆 駕驾 驅驱 驗验 骯肮 鬧闹 魯鲁 鮑鲍 鯨鲸 鴉鸦 麥麦 "
    "齒齿 齡龄 龐庞 軟软 軸轴 輔辅 輩辈 輪轮 轟轰 辭辞 農农 邁迈 鄭郑 醜丑 釘钉 "
    "鈴铃 鉛铅 銳锐 鋪铺 錦锦 鍋锅 鍛锻 鍊炼 煉炼 鏽锈 鑄铸 鑽钻 閒闲 閑闲 閣阁 "
    "闊阔 闆板 陣阵 陸陆 陰阴 隨随 雙双 雛雏 靦腼 鞏巩 韋韦 顫颤 顯显 颳刮 飄飘 "
    "餵喂 養养 餘余 饒饶 馴驯 駐驻 騰腾 驕骄 髮发 鬥斗 鬱郁 鳳凤 鳴鸣 鴻鸿 鵬鹏 "
    "麗丽 麼么 黃黄 黨党 齋斋 龍龙 拋抛 捨舍 掃扫 掙挣 揀拣 換换 揮挥 損损 搶抢 "
    "攜携 攤摊 敵敌 數数 斃毙 暈晕 曆历 曉晓 朧胧 殼壳 毀毁 氫氢 決决 沒没 淺浅 "
    "渦涡 湯汤 溼湿 濕湿 滯滞 滲渗 漁渔 潛潜 澀涩 濃浓 濫滥 瀏浏 灑洒 灘滩 災灾 "
    "烏乌 無无 煙烟 營营 爐炉 牽牵 犧牺 狹狭 獨独 獲获 獵猎 玀猡 瑣琐 瓊琼 產产 "
    "畢毕 畫画 異异 療疗 瘋疯 癮瘾 發发 盜盗 盡尽 矯矫 礙碍 禍祸 禮礼 稅税 穩稳 "
    "窮穷 竄窜 築筑 簡简 粵粤 糧粮 紙纸 純纯 紛纷 紮扎 累累 終终 絡络 綜综 綿绵 "
    "緣缘 編编 練练 縱纵 績绩 繁繁 繩绳 繪绘 纏缠 罰罚 罷罢 羅罗 習习 聖圣 聞闻 "
    "職职 腦脑 腫肿 膽胆 膿脓 臨临 與与 興兴 艱艰 芻刍 莊庄 華华 萊莱 蒼苍 蓋盖 "
    "蔣蒋 蘆芦 處处 號号 蝦虾 蝸蜗 螞蚂 蟻蚁 蠅蝇 蠶蚕 衆众 補补 襪袜 親亲 觀观 "
    "訂订 訊讯 訓训 記记 許许 設设 診诊 詐诈 評评 詢询 試试 詩诗 詳详 誇夸 誌志 "
    "認认 誤误 說说 請请 諸诸 謊谎 謝谢 謹谨 譜谱 警警 譯译 議议 讀读 變变 讓让 "
    "豈岂 豎竖 貞贞 負负 財财 貧贫 貨货 販贩 貪贪 責责 貴贵 貸贷 費费 賀贺 資资 "
    "賊贼 賭赌 賺赚 購购 趕赶 趙赵 跡迹 踐践 蹤踪 軀躯 車车 軌轨 軍军 載载 輕轻 "
    "迴回 這这 連连 週周 進进 遊游 運运 過过 達达 違违 遙遥 適适 遲迟 選选 遺遗 "
    "還还 邊边 鄧邓 醬酱 釀酿 針针 鈕钮 銷销 鋤锄 錄录 錐锥 鍾钟 鎊镑 鏟铲 鐘钟 "
    "長长 閃闪 閉闭 問问 闖闯 關关 陽阳 陳陈 陸陆 隊队 階阶 際际 隱隐 雜杂 雞鸡 "
    "雲云 電电 靈灵 韓韩 頁页 頂顶 項项 順顺 須须 預预 頌颂 頭头 顏颜 顛颠 類类 "
    "風风 飛飞 飯饭 飾饰 餃饺 餐餐 饑饥 馬马 駁驳 駛驶 騷骚 驚惊 體体 鬆松 魂魂 "
    "魚鱼 鮮鲜 鳥鸟 鴨鸭 鵝鹅 鷄鸡 鹹咸 麪面 黴霉 點点 齊齐 龜龟 猙狰 獰狞 姦奸 "
    "淫淫 妓妓 綁绑 綫线 腳脚 骯肮 喪丧 亂乱 賣卖 厭厌 廢废 慘惨 毆殴 殲歼 殺杀 "
    "屠屠 斃毙 槍枪 砍砍 窺窥 誘诱 猥猥 勁劲 壯壮 彎弯 綠绿 藍蓝 紫紫 橙橙 粉粉 "
)

T2S: Final[dict[int, str]] = {
    ord(pair[0]): pair[1] for pair in _T2S_PAIRS.split() if len(pair) == 2 and pair[0] != pair[1]
}
