package capture

// The built-in names. A posted name is split into segments (see segments) and its last segment,
// lower-cased and in snake_case, is looked up here, first as it is and then without one context
// prefix ("billing_first_name" → "first_name"). So each row below also matches "checkout[email]",
// "customer.email", "billing_address[zip]", "shipping_address[city]", "billing.first_name",
// "billing_postcode", "customer.firstName", "E-Mail", "contact[phone-number]" and the like.
//
//	field          names
//	email          email, emails, e_mail, email_address, emailaddress, mail, user_email, email1
//	phone          phone, tel, telephone, phone_number, phonenumber, phone1, mobile, mobile_phone,
//	               mobile_number, cell, cellphone, cell_phone, contact_number, phones, phone_numbers
//	first_name     first_name, firstname, fname, f_name, given_name, givenname, forename
//	last_name      last_name, lastname, lname, l_name, family_name, familyname, surname
//	full_name      full_name, fullname, name, your_name (only at top level or under a person or
//	               address object for "name"); split at the first space when no first/last name
//	date_of_birth  dob, birthday, birthdate, birth_date, date_of_birth, dateofbirth, bday
//	gender         gender, sex
//	street         street, street_address, address, address1, address_1, address_line1,
//	               address_line_1, addressline1, line1, street1
//	city           city, town, locality
//	state          state, province, province_code, region, state_code, county
//	zip            zip, zipcode, zip_code, postcode, post_code, postal_code, postalcode, postal
//	country        country, country_code, countrycode, country_id
//	cart_token     cart_token, carttoken, and "token" directly under "cart"
//
// Context prefixes stripped once from the last segment: billing_, shipping_, delivery_, customer_,
// contact_, user_, buyer_, payer_, account_, checkout_, your_, bill_, ship_. A shipping_ or
// delivery_ prefix, or a "shipping"/"delivery" segment anywhere in the name, marks the value as a
// shipping address, which loses to a billing or unqualified one.
var builtin = map[string]string{
	"email": Email, "e_mail": Email, "email_address": Email, "emailaddress": Email, "mail": Email,
	"user_email": Email, "email1": Email, "emails": Email,

	"phone": Phone, "tel": Phone, "telephone": Phone, "phone_number": Phone, "phonenumber": Phone,
	"phone1": Phone, "mobile": Phone, "mobile_phone": Phone, "mobile_number": Phone, "cell": Phone,
	"cellphone": Phone, "cell_phone": Phone, "contact_number": Phone, "phones": Phone, "phone_numbers": Phone,

	"first_name": FirstName, "firstname": FirstName, "fname": FirstName, "f_name": FirstName,
	"given_name": FirstName, "givenname": FirstName, "forename": FirstName,

	"last_name": LastName, "lastname": LastName, "lname": LastName, "l_name": LastName,
	"family_name": LastName, "familyname": LastName, "surname": LastName,

	"full_name": FullName, "fullname": FullName, "name": FullName,

	"dob": DateOfBirth, "birthday": DateOfBirth, "birthdate": DateOfBirth, "birth_date": DateOfBirth,
	"date_of_birth": DateOfBirth, "dateofbirth": DateOfBirth, "bday": DateOfBirth,

	"gender": Gender, "sex": Gender,

	"street": Street, "street_address": Street, "address": Street, "address1": Street,
	"address_1": Street, "address_line1": Street, "address_line_1": Street, "addressline1": Street,
	"line1": Street, "street1": Street,

	"city": City, "town": City, "locality": City,

	"state": State, "province": State, "province_code": State, "region": State, "state_code": State,
	"county": State,

	"zip": Zip, "zipcode": Zip, "zip_code": Zip, "postcode": Zip, "post_code": Zip,
	"postal_code": Zip, "postalcode": Zip, "postal": Zip,

	"country": Country, "country_code": Country, "countrycode": Country, "country_id": Country,

	"cart_token": CartToken, "carttoken": CartToken,
}

// ambiguous names are taken only at the top level or under a person or address object: an item's
// or a product's "name" is not the customer's.
var ambiguous = map[string]bool{"name": true}

// personParents are parent segments (matched as substrings) under which an ambiguous name is the
// customer's: "customer", "billing_address", "contact", …
var personParents = []string{"customer", "billing", "shipping", "delivery", "contact", "user", "buyer", "payer", "person", "address", "account", "profile", "checkout"}

// contextPrefixes are stripped once from the last segment before the table lookup.
var contextPrefixes = []string{"billing_", "shipping_", "delivery_", "customer_", "contact_", "user_", "buyer_", "payer_", "account_", "checkout_", "your_", "bill_", "ship_"}

// limits are the longest plausible value of each field, in bytes; longer values are ignored. The
// map's keys are also the valid keys of Fields.
var limits = map[string]int{
	Email:       254,
	Phone:       32,
	FirstName:   100,
	LastName:    100,
	FullName:    200,
	DateOfBirth: 32,
	Gender:      16,
	Street:      200,
	City:        100,
	State:       100,
	Zip:         16,
	Country:     64,
	CartToken:   128,
}
